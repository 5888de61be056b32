import sys; sys.path.insert(0, "/work/main")
from utils import before_paddle; before_paddle()
import paddle, numpy as np, catch, time
import paddle.nn.functional as F
from model import ModelConfig, build_model
paddle.base.core.set_num_threads(1); paddle.seed(1)
cfg = ModelConfig(patch_size=6, num_patches=3, glimpse_scale=2, core="lstm", hidden_size=256, std=0.1, image_size=24, num_classes=3, num_glimpses=23)
model = build_model(cfg)
opt = paddle.optimizer.Adam(1e-3, parameters=model.parameters())
env = catch.CatchVectorEnv(128); s, _ = env.reset(seed=1)
for u in range(400):
    l = paddle.uniform([128, 2], min=-1, max=1); state = None; losses = []; correct = 0
    for t in range(catch.FRAMES):
        ball = s[:, 0, :23].reshape(128, -1).argmax(1) % 24
        target = np.where(ball < env.paddle, 0, np.where(ball > env.paddle + 1, 2, 1))
        h, state, l, logpi, b = model.step(paddle.to_tensor(s * 14), l, state)
        lp = model.classifier(h)
        losses.append(F.nll_loss(lp, paddle.to_tensor(target)))
        a = lp.argmax(1).numpy(); correct += (a == target).mean()
        s, r, e, _, _ = env.step(target)
    loss = paddle.add_n(losses) / len(losses); opt.clear_grad(); loss.backward(); opt.step()
    if u % 25 == 0: print(u, f"imitation acc {correct/catch.FRAMES:.3f} loss {float(loss):.3f}", flush=True)
