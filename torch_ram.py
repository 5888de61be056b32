"""The PyTorch reference's RAM (kevinzakka/recurrent-visual-attention), written
again by us as a baseline for benchmarks and comparisons: the same layers, loss
and per-image-loop retina. Never imported by the Paddle code.

    python torch_ram.py --epochs 30 --log logs/torch_reference_30.log

trains it on our bundled MNIST split (the same images, split and defaults as
main.py) and evaluates the best-validation weights on the test set with M=10.

    python torch_ram.py --serve batches.npz

is the PyTorch side of `python benchmark.py --compare-torch`: it reads one JSON
command per line on stdin, times it and answers with one JSON line. It never
imports Paddle (whose import sets OMP_NUM_THREADS=1), so torch keeps its
default threads.
"""
import argparse
import json
import sys
import time

import numpy as np

import torch
import torch.nn as nn
import torch.nn.functional as F

# torch's default threads, read before main() imports our data_loader, whose import of
# Paddle sets OMP_NUM_THREADS=1 (it left the 30-epoch runs of results/logs on one thread).
DEFAULT_THREADS = torch.get_num_threads()


class Retina:
    """The reference's retina: per-image slicing of a zero-padded batch."""

    def __init__(self, g, k, s):
        self.g, self.k, self.s = g, k, s

    def foveate(self, x, l):
        phi, size = [], self.g
        for _ in range(self.k):
            phi.append(self.extract_patch(x, l, size))
            size = int(self.s * size)
        for i in range(1, len(phi)):
            phi[i] = F.avg_pool2d(phi[i], phi[i].shape[-1] // self.g)
        return torch.cat(phi, 1).view(x.shape[0], -1)

    def extract_patch(self, x, l, size):
        B, C, H, W = x.shape
        start = (0.5 * ((l + 1.0) * H)).long()
        end = start + size
        x = F.pad(x, (size // 2, size // 2, size // 2, size // 2))
        return torch.stack([x[i, :, start[i, 1]:end[i, 1], start[i, 0]:end[i, 0]] for i in range(B)])


class RecurrentAttention(nn.Module):
    """The reference model, one glimpse per call as there; episode() runs T of them."""

    def __init__(self, g=8, k=1, s=1, c=1, h_g=128, h_l=128, std=0.05, hidden_size=256,
                 num_classes=10, num_glimpses=6):
        super().__init__()
        self.std, self.hidden_size, self.num_glimpses = std, hidden_size, num_glimpses
        self.retina = Retina(g, k, s)
        self.sensor = nn.Module()
        self.sensor.fc1 = nn.Linear(k * g * g * c, h_g)
        self.sensor.fc2 = nn.Linear(2, h_l)
        self.sensor.fc3 = nn.Linear(h_g, h_g + h_l)
        self.sensor.fc4 = nn.Linear(h_l, h_g + h_l)
        self.rnn = nn.Module()
        self.rnn.i2h = nn.Linear(h_g + h_l, hidden_size)
        self.rnn.h2h = nn.Linear(hidden_size, hidden_size)
        self.locator = nn.Module()
        self.locator.fc = nn.Linear(hidden_size, hidden_size // 2)
        self.locator.fc_lt = nn.Linear(hidden_size // 2, 2)
        self.classifier = nn.Module()
        self.classifier.fc = nn.Linear(hidden_size, num_classes)
        self.baseliner = nn.Module()
        self.baseliner.fc = nn.Linear(hidden_size, 1)

    def step(self, x, l_prev, h_prev, noise=None):
        """One glimpse, as the reference's forward(); noise (B, 2), if given, replaces
        the standard-normal draw of rsample(). Returns h_t, l_t, b_t, log_pi, mu."""
        s = self.sensor
        phi = self.retina.foveate(x, l_prev)
        g_t = F.relu(s.fc3(F.relu(s.fc1(phi))) + s.fc4(F.relu(s.fc2(l_prev))))
        h_t = F.relu(self.rnn.i2h(g_t) + self.rnn.h2h(h_prev))
        mu = torch.tanh(self.locator.fc_lt(F.relu(self.locator.fc(h_t.detach()))))
        policy = torch.distributions.Normal(mu, self.std)
        l_t = (policy.rsample() if noise is None else mu + self.std * noise).detach()
        log_pi = policy.log_prob(l_t).sum(dim=1)
        b_t = self.baseliner.fc(h_t.detach()).squeeze(1)
        return h_t, torch.clamp(l_t, -1, 1), b_t, log_pi, mu

    def episode(self, x, l_0=None, noise=None, record=None):
        """T glimpses, as the reference's trainer runs them. l_0 (B, 2) and noise
        (B, T, 2), if given, replace the random draws; record, a dict of lists, if
        given, collects h_t, mu_t, l_t, b_t and log_pi_t of every glimpse."""
        B = x.shape[0]
        h_t = torch.zeros(B, self.hidden_size)
        l_t = torch.empty(B, 2).uniform_(-1, 1) if l_0 is None else l_0
        log_pi, baselines = [], []
        for t in range(self.num_glimpses):
            h_t, l_t, b_t, p, mu = self.step(x, l_t, h_t, None if noise is None else noise[:, t])
            log_pi.append(p)
            baselines.append(b_t)
            if record is not None:
                for name, value in zip(["h", "mu", "l", "b", "log_pi"], [h_t, mu, l_t, b_t, p]):
                    record.setdefault(name, []).append(value)
        log_probas = F.log_softmax(self.classifier.fc(h_t), dim=1)
        return log_probas, torch.stack(log_pi, 1), torch.stack(baselines, 1)


def loss_terms(log_probas, log_pi, baselines, y):
    """The reference's hybrid loss, term by term: (action, baseline, reinforce, R)."""
    predicted = log_probas.argmax(1)
    R = (predicted.detach() == y).float().unsqueeze(1).repeat(1, log_pi.shape[1])
    reinforce = torch.sum(-log_pi * (R - baselines.detach()), dim=1).mean()
    return F.nll_loss(log_probas, y), F.mse_loss(baselines, R), reinforce, R[:, 0]


def loss_fn(log_probas, log_pi, baselines, y):
    action, baseline, reinforce, reward = loss_terms(log_probas, log_pi, baselines, y)
    return action + baseline + 0.01 * reinforce, reward


@torch.no_grad()
def evaluate(model, images, labels, M, batch_size):
    correct = 0.0
    for i in range(0, len(labels), batch_size):
        x, y = torch.from_numpy(images[i:i + batch_size]), torch.from_numpy(labels[i:i + batch_size])
        log_probas, _, _ = model.episode(x.repeat(M, 1, 1, 1))
        log_probas = log_probas.view(M, -1, log_probas.shape[-1]).mean(0)
        correct += float((log_probas.argmax(1) == y).sum())
    return 100.0 * correct / len(labels)


def serve(batches_path):
    """Answer benchmark.py's timing commands; see benchmark.py for the protocol."""
    data = np.load(batches_path)
    images, labels = torch.from_numpy(data["images"]), torch.from_numpy(data["labels"])
    batch_size = int(data["batch_size"])
    torch.manual_seed(1)
    model = RecurrentAttention()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    batches = [(images[i:i + batch_size], labels[i:i + batch_size])
               for i in range(0, len(labels), batch_size)]

    def train(steps):
        model.train()
        for i in range(steps):
            x, y = batches[i % len(batches)]
            loss, _ = loss_fn(*model.episode(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return steps * batch_size

    @torch.no_grad()
    def evaluate_batches(count, M):
        model.eval()
        for i in range(count):
            x, _ = batches[i % len(batches)]
            log_probas, _, _ = model.episode(x.repeat(M, 1, 1, 1))
            log_probas.view(M, -1, log_probas.shape[-1]).mean(0).argmax(1)
        return count * batch_size

    def retina(calls, size, g, k, s):
        retina = Retina(g, k, s)
        x = torch.rand(batch_size, 1, size, size)
        l = torch.empty(batch_size, 2).uniform_(-1, 1)
        for _ in range(calls):
            retina.foveate(x, l)
        return calls

    ops = {"train": train, "eval": evaluate_batches, "retina": retina}
    print(json.dumps({"ready": True, "torch": torch.__version__,
                      "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        start = time.perf_counter()
        count = ops[command["op"]](**command["args"])
        print(json.dumps({"seconds": time.perf_counter() - start, "count": count}), flush=True)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        return serve(sys.argv[2])
    from data_loader import EpochShuffler, load_mnist, train_valid_split
    torch.set_num_threads(DEFAULT_THREADS)

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--M", type=int, default=10)
    parser.add_argument("--data_dir", default="data/MNIST")
    parser.add_argument("--log", default="logs/torch_reference_30.log")
    parser.add_argument("--ckpt", default=None,
                        help="also save the best epoch here, as the reference's trainer saves "
                             "<model_name>_model_best.pth.tar")
    parser.add_argument("--test", metavar="PTH_TAR", default=None,
                        help="only test this reference checkpoint, as the reference's test() does")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    if args.test:
        model = RecurrentAttention()
        model.load_state_dict(torch.load(args.test, weights_only=True)["model_state"])
        test_acc = evaluate(model, *load_mnist(args.data_dir, "test"), args.M, 128)
        print(f"test {args.test} (M={args.M}, seed {args.seed}): error {100 - test_acc:.2f}%")
        return
    images, labels = load_mnist(args.data_dir, "train")
    train_idx, valid_idx = train_valid_split(len(labels), 0.1, args.seed)
    test_images, test_labels = load_mnist(args.data_dir, "test")
    model = RecurrentAttention()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    best_acc, best_state = 0.0, None
    shuffler = EpochShuffler(len(train_idx), args.seed)  # main.py's epoch order
    with open(args.log, "w") as log:
        log.write(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {vars(args)}\n")
        for epoch in range(args.epochs):
            shuffler.set_epoch(epoch)
            start, order = time.time(), train_idx[list(shuffler)]
            total_loss = total_correct = 0.0
            model.train()
            for i in range(0, len(order), 128):
                batch = order[i:i + 128]
                x, y = torch.from_numpy(images[batch]), torch.from_numpy(labels[batch])
                loss, correct = loss_fn(*model.episode(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total_loss += float(loss) * len(batch)
                total_correct += float(correct.sum())
            samples_per_s = len(order) / (time.time() - start)
            valid_acc = evaluate(model, images[valid_idx], labels[valid_idx], args.M, 128)
            if valid_acc > best_acc:
                best_acc, best_state = valid_acc, {k: v.clone() for k, v in model.state_dict().items()}
                if args.ckpt:  # the reference's checkpoint dict
                    torch.save({"epoch": epoch + 1, "model_state": model.state_dict(),
                                "optim_state": optimizer.state_dict(),
                                "best_valid_acc": best_acc}, args.ckpt)
            line = (f"epoch {epoch + 1} train_loss {total_loss / len(order):.4f} train_acc "
                    f"{100 * total_correct / len(order):.2f} valid_acc {valid_acc:.2f} valid_err "
                    f"{100 - valid_acc:.2f} seconds {time.time() - start:.1f} samples_per_s "
                    f"{samples_per_s:.0f}")
            print(line, flush=True)
            log.write(line + "\n")
            log.flush()
        model.load_state_dict(best_state)
        test_acc = evaluate(model, test_images, test_labels, args.M, 128)
        line = f"test (best valid {best_acc:.2f}%, M={args.M}): error {100 - test_acc:.2f}%"
        print(line)
        log.write(line + "\n")


if __name__ == "__main__":
    main()
