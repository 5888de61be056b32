import sys; sys.path.insert(0, "/work/main")
from utils import before_paddle; before_paddle()
import paddle, numpy as np, catch
from model import ModelConfig, build_model, play, game_loss
paddle.base.core.set_num_threads(1); paddle.seed(1)
g, k, s = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]); scale = float(sys.argv[5])
cfg = ModelConfig(patch_size=g, num_patches=k, glimpse_scale=s, core="lstm", hidden_size=256, std=0.1, image_size=24, num_classes=3, num_glimpses=23)
model = build_model(cfg)
import modules
if sys.argv[7] == "critic": modules.BaselineNetwork.forward = lambda self, h: self.fc(h).squeeze(1)
opt = paddle.optimizer.Adam(float(sys.argv[1]), parameters=model.parameters())
games = catch.CatchVectorEnv(64); screens, _ = games.reset(seed=1)
orig = games.step
def step(a):
    s_, r, e, t, i = orig(a); return s_ * scale, r, e, t, i
games.step = step
for u in range(int(sys.argv[6])):
    ep = play(model, games, screens * scale); screens = games.screens()
    loss = game_loss(ep); opt.clear_grad(); loss.total.backward()
    gn = float(model.classifier.fc.weight.grad.abs().mean())
    opt.step()
    if u % 25 == 0:
        a = np.bincount(ep.actions.numpy().ravel(), minlength=3) / ep.actions.size
        print(u, f"catch {float(ep.rewards.mean()):.3f}", "actions", np.round(a, 2), f"grad {gn:.2e}", f"b {float(ep.baselines.mean()):.3f}", flush=True)
