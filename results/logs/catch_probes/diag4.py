import sys; sys.path.insert(0, "/work/main")
from utils import before_paddle; before_paddle()
import paddle, numpy as np, catch, time
from model import ModelConfig, build_model, play, game_loss
paddle.base.core.set_num_threads(1); paddle.seed(1)
lr, g, k, s, scale, updates, B, K = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
cfg = ModelConfig(patch_size=g, num_patches=k, glimpse_scale=s, core="lstm", hidden_size=256, std=0.1, image_size=24, num_classes=3, num_glimpses=23)
model = build_model(cfg)
opt = paddle.optimizer.Adam(lr, parameters=model.parameters())
games = catch.TrainingGames(B, 10**9, 1, K)
orig = games.games.step
def step(a):
    s_, r, e, t, i = orig(a); return s_ * scale, r, e, t, i
games.games.step = step
it = iter(games); t0 = time.time(); frames = 0; hist = []
for u in range(updates):
    env, screens = next(it)
    ep = play(model, env, screens * scale)
    loss = game_loss(ep, K, float(sys.argv[9])); opt.clear_grad(); loss.total.backward(); opt.step()
    frames += B * K * 23; hist.append(float(ep.rewards.mean()))
    if u % 25 == 0:
        a = np.bincount(ep.actions.numpy().ravel(), minlength=3) / ep.actions.size
        print(u, frames, f"catch {np.mean(hist[-25:]):.3f}", "actions", np.round(a, 2), f"b {float(ep.baselines.mean()):.3f} fps {frames/(time.time()-t0):.0f}", flush=True)
