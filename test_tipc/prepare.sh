#!/bin/bash
# Prepare the data of the TIPC chain: bash test_tipc/prepare.sh CONFIG MODE
# lite_train_lite_infer: test_tipc/lite_data/, the IDX files of 320 training and 64 test
# digits cut from the bundled data/MNIST. whole_infer: nothing to prepare (the published
# checkpoint and the images to predict, data/examples/digits.npz, are bundled).
FILENAME=$1
MODE=$2
python=$(awk -F: 'NR==3 {print $2}' "${FILENAME}")
if [ "${MODE}" = "lite_train_lite_infer" ]; then
    ${python} - <<'PYEOF'
import gzip, os
import numpy as np
from data_loader import read_digits

out = os.path.join("test_tipc", "lite_data")
os.makedirs(out, exist_ok=True)
for split, prefix, count in (("train", "train", 320), ("test", "t10k", 64)):
    digits, labels = read_digits("data/MNIST", split)
    for kind, array, magic in (("images-idx3", digits[:count], 2051), ("labels-idx1", labels[:count], 2049)):
        header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
        with gzip.open(os.path.join(out, f"{prefix}-{kind}-ubyte.gz"), "wb") as f:
            f.write(header + array.astype(np.uint8).tobytes())
print(f"[*] {out}: 320 training and 64 test digits")
PYEOF
fi
