"""Small helpers shared by the trainer and the tools."""
import os

import paddle


def atomic_save(state, path):
    """paddle.save to a temporary file, flushed to disk, then renamed over `path`,
    so that a crash leaves either the old file or the new one, never half of one."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        paddle.save(state, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
