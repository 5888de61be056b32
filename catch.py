"""Catch, the game of the paper's section 4.2, as a Gymnasium environment: B games at once.

A 24 x 24 screen of binary pixels. A one-pixel ball starts on the top row and falls one row
a frame while moving one column sideways, bouncing off the side walls; a two-pixel paddle
on the bottom row moves one column a frame, left, right or not at all (actions 0, 1, 2),
stopped at the edges. When the ball reaches the bottom row the game ends, with reward 1 if
the paddle overlaps it and 0 if not, and a new game starts in the same frame (Gymnasium's
same-step autoreset): each game is SIZE - 1 = 23 frames, and games started together stay
together. The paper leaves open, and we chose: the ball's start column uniform over the
row, its sideways speed uniform in [-1, 1] pixels a frame, the paddle starting in the middle.

    import gymnasium as gym, catch
    games = gym.make_vec("Catch-v0", num_envs=64, vectorization_mode="vector_entry_point")
    screens, info = games.reset(seed=0)  # (64, 1, 24, 24) float32, 1 where ball or paddle is
    screens, rewards, ended, truncated, info = games.step(actions)  # actions: (64,) of 0, 1, 2

`gym.make("Catch-v0")` gives one game.
"""
import math

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

SIZE = 24  # pixels on a side of the screen
PADDLE = 2  # pixels of the paddle
FRAMES = SIZE - 1  # frames of a game: the ball falls from the top row to the bottom one
ACTIONS = ("left", "stay", "right")  # action a moves the paddle a - 1 columns
# What an agent multiplies the screens by: one over the standard deviation of a pixel (three
# of the 576 are lit), as MNIST's pixels are standardised, so that the ball and paddle weigh
# as much in a glimpse as a digit's strokes; the zeros beyond the screen stay the background.
SCREEN_SCALE = 1 / math.sqrt(3 / SIZE**2 * (1 - 3 / SIZE**2))


class CatchVectorEnv(VectorEnv):
    """num_envs games of Catch, stepped together with NumPy arrays (no loop over games).
    Observations (num_envs, 1, SIZE, SIZE) float32, rewards float32, terminations at each
    game's last frame; info["final_obs"] holds the screens the ended games ended on."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs=1, copies=1):
        if num_envs % copies:
            raise ValueError(f"num_envs ({num_envs}) must be a multiple of copies ({copies})")
        self.num_envs, self.copies = num_envs, copies
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, (1, SIZE, SIZE), np.float32)
        self.single_action_space = gym.spaces.Discrete(len(ACTIONS))
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space,
                                                              num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.rng = np.random.default_rng()
        self.games = np.arange(num_envs)
        self.row = np.zeros(num_envs, np.int64)  # the ball's
        self.x = np.zeros(num_envs)  # the ball's place across, in [0, SIZE - 1]: drawn rounded
        self.speed = np.zeros(num_envs)  # the ball's sideways speed, pixels a frame
        self.paddle = np.zeros(num_envs, np.int64)  # the paddle's left column

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.new_games(np.ones(self.num_envs, bool))
        return self.screens(), {}

    def new_games(self, which):
        """Start new games where `which` (a bool array) is True; with copies, game i + k *
        (num_envs // copies) starts as game i does (several plays of one game)."""
        first = which[:self.num_envs // self.copies]
        n = int(first.sum())
        x, speed = self.rng.integers(0, SIZE, n), self.rng.uniform(-1.0, 1.0, n)
        which = np.tile(first, self.copies)
        self.row[which] = 0
        self.x[which] = np.tile(x, self.copies)
        self.speed[which] = np.tile(speed, self.copies)
        self.paddle[which] = (SIZE - PADDLE) // 2

    def step(self, actions):
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.isin(actions, (0, 1, 2)).all():
            raise ValueError(f"actions must be {self.num_envs} of 0, 1, 2, got {actions!r}")
        self.paddle = np.clip(self.paddle + actions - 1, 0, SIZE - PADDLE)
        self.row += 1
        x = self.x + self.speed
        bounced = (x < 0) | (x > SIZE - 1)  # off a wall: back the way it came
        self.speed[bounced] *= -1
        self.x = np.where(x < 0, -x, np.where(x > SIZE - 1, 2 * (SIZE - 1) - x, x))
        ended = self.row == SIZE - 1
        col = self.column()
        caught = ended & (self.paddle <= col) & (col < self.paddle + PADDLE)
        info = {}
        if ended.any():
            info["final_obs"] = self.screens()
            self.new_games(ended)
        return (self.screens(), caught.astype(np.float32), ended, np.zeros(self.num_envs, bool),
                info)

    def column(self):
        """The ball's pixel column: its place across, rounded."""
        return np.rint(self.x).astype(np.int64)

    def screens(self):
        """The games' screens: (num_envs, 1, SIZE, SIZE) float32, 1 at the ball and paddle."""
        screens = np.zeros((self.num_envs, 1, SIZE, SIZE), np.float32)
        screens[self.games, 0, self.row, self.column()] = 1.0
        for offset in range(PADDLE):
            screens[self.games, 0, SIZE - 1, self.paddle + offset] = 1.0
        return screens


class CatchEnv(gym.Env):
    """One game of Catch (gym.make("Catch-v0")): CatchVectorEnv's rules for a single
    game, observations (1, SIZE, SIZE). The game ends (terminated) when the ball reaches
    the bottom row; reset starts the next one."""

    metadata = {"render_modes": []}

    def __init__(self):
        self.games = CatchVectorEnv(1)
        self.observation_space = self.games.single_observation_space
        self.action_space = self.games.single_action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        screens, info = self.games.reset(seed=seed)
        return screens[0], info

    def step(self, action):
        screens, rewards, ended, truncated, info = self.games.step(np.array([action]))
        screen = info["final_obs"][0] if ended[0] else screens[0]
        return screen, float(rewards[0]), bool(ended[0]), False, {}


class TrainingGames:
    """An epoch of training games for main.py: len() batches of `batch` games played at once,
    each `paths` times (row m * batch + b: play m of game b), each batch as (games, screens),
    a CatchVectorEnv and its games' first screens. The games come from the seed and the
    epoch (set_epoch), so a resumed run plays the same ones."""

    def __init__(self, batch, epoch_frames, seed, paths=1):
        self.games = CatchVectorEnv(batch * paths, copies=paths)
        self.seed, self.epoch = seed, 0
        self.batches = math.ceil(epoch_frames / (batch * paths * FRAMES))
        self.frames = self.batches * batch * paths * FRAMES  # of an epoch

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.batches

    def __iter__(self):
        screens, _ = self.games.reset(seed=[0, self.seed, self.epoch])
        for _ in range(self.batches):
            yield self.games, screens
            screens = self.games.screens()  # the next games' first (same-step autoreset)


class FixedGames:
    """`count` games, the same for every run and implementation (from `split`, 1 to validate
    and 2 to test, and `seed`), in batches of at most `batch` games: (games, screens)."""

    def __init__(self, count, batch, seed, split):
        self.count, self.batch, self.seed, self.split = count, batch, seed, split

    def __len__(self):
        return math.ceil(self.count / self.batch)

    def __iter__(self):
        for i, start in enumerate(range(0, self.count, self.batch)):
            games = CatchVectorEnv(min(self.batch, self.count - start))
            screens, _ = games.reset(seed=[self.split, self.seed, i])
            yield games, screens


def random_play(count, seed, dataset_seed=0, batch=1000):
    """(caught, count): the balls that uniformly random actions (from `seed`) catch in the
    `count` test games that main.py --is_train=False plays (--dataset_seed `dataset_seed`)."""
    rng = np.random.default_rng(seed)
    caught = 0
    for games, _ in FixedGames(count, batch, dataset_seed, split=2):
        for _ in range(FRAMES):  # a reward comes at a game's last frame alone
            caught += int(games.step(rng.integers(0, len(ACTIONS), games.num_envs))[1].sum())
    return caught, count


gym.register(id="Catch-v0", entry_point=CatchEnv, vector_entry_point=CatchVectorEnv)

if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="The baseline of random play: the catch rate of "
                                     "uniformly random actions on main.py's test games.")
    parser.add_argument("--games", type=int, default=10_000, help="test games to play")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random actions")
    args = parser.parse_args()
    if not 1 <= args.games <= 10**7:
        parser.error("--games must be 1 to 10000000")
    caught, count = random_play(args.games, args.seed)
    print(f"[*] Random actions: Catch rate: {caught}/{count} ({100 * caught / count:.2f}%)")
