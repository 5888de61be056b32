import numpy as np, sys
sys.path.insert(0, "/work/main")
import catch
rng = np.random.default_rng(0)
def run(w, n=4096):
    env = catch.CatchVectorEnv(n); s, _ = env.reset(seed=int(rng.integers(1e9)))
    glog = np.zeros(n)
    for t in range(catch.FRAMES):
        ball = s[:, 0, :23].reshape(n, -1).argmax(1) % 24
        feat = np.sign(ball - (env.paddle + 0.5))  # +1: ball right of paddle
        logits = np.stack([-w * feat, np.zeros(n), w * feat], 1)
        p = np.exp(logits); p /= p.sum(1, keepdims=True)
        a = (rng.random(n)[:, None] > np.cumsum(p, 1)).sum(1)
        # d/dw log p(a): feat * (onehot(a)[2]-onehot(a)[0] - (p2 - p0))
        glog += feat * ((a == 2).astype(float) - (a == 0) - (p[:, 2] - p[:, 0]))
        s, r, e, _, _ = env.step(a)
    return r, glog
for w in [0.0, 0.5, 1.0, 2.0, 4.0]:
    r, g = run(w)
    adv = r - r.mean()
    est = adv * g
    print(f"w {w}: catch {r.mean():.3f}  grad mean {est.mean():.4f} sd {est.std():.3f}  per-game SNR {est.mean()/est.std():.3f}")
