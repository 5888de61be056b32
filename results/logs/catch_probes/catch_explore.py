import sys, time
sys.path.insert(0, "/work/main")
from utils import before_paddle
before_paddle()
import paddle, numpy as np, gymnasium as gym
import catch
from model import ModelConfig, build_model, play, game_loss
lr, std, B, seed, threads = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), 1; gamma = float(sys.argv[5])
paddle.base.core.set_num_threads(threads); paddle.seed(seed)
cfg = ModelConfig(patch_size=6, num_patches=3, glimpse_scale=2, core="lstm", hidden_size=256, std=std, image_size=24, num_classes=3, num_glimpses=catch.FRAMES)
model = build_model(cfg)
opt = paddle.optimizer.Adam(lr, parameters=model.parameters())
games = gym.make_vec("Catch-v0", num_envs=B, vectorization_mode="vector_entry_point")
screens, _ = games.reset(seed=seed)
frames, t0, caught, n = 0, time.time(), 0.0, 0
for update in range(1, 100000):
    model.train()
    ep = play(model, games, screens)
    screens = ep.screens
    loss = game_loss(ep, gamma)
    opt.clear_grad(); loss.total.backward(); opt.step()
    frames += B * catch.FRAMES
    caught += float(ep.rewards.sum()); n += B
    if update % 50 == 0:
        print(f"frames {frames} catch {caught/n:.3f} fps {frames/(time.time()-t0):.0f} mse {float(loss.baseline):.3f}", flush=True)
        caught, n = 0.0, 0
    if frames > 20e6: break
