"""catch.py: the rules of the game, one frame a step, and Gymnasium's API."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import catch
from catch import FRAMES, PADDLE, SIZE, CatchVectorEnv

LEFT, STAY, RIGHT = 0, 1, 2


def games_at(x, speed, paddle, row=0):
    """One game with the ball at row, place x, sideways speed, and the paddle at column paddle."""
    games = CatchVectorEnv(1)
    games.reset(seed=0)
    games.row[:], games.x[:], games.speed[:], games.paddle[:] = row, x, speed, paddle
    return games


def ball_and_paddle(screen):
    """(row, column) of the ball above the bottom row, and the paddle's columns, of a screen."""
    rows, cols = np.nonzero(screen[0, :-1])
    return (int(rows[0]), int(cols[0])), list(np.nonzero(screen[0, -1])[0])


def test_each_step_is_one_frame_the_ball_one_row_lower():
    games = games_at(x=5.0, speed=1.0, paddle=11)
    for frame in range(1, 4):
        screens, _, ended, _, _ = games.step(np.array([STAY]))
        assert ball_and_paddle(screens[0]) == ((frame, 5 + frame), [11, 12]) and not ended[0]


@pytest.mark.parametrize("x,speed,after", [(0.0, -1.0, [1, 2, 3]), (SIZE - 1.0, 1.0, [22, 21, 20]),
                                           (0.5, -1.0, [0, 2, 2])])  # 0.5 -> 0.5 -> 1.5 -> 2.5
def test_the_ball_bounces_off_both_walls_and_corners(x, speed, after):
    games = games_at(x=x, speed=speed, paddle=11)
    seen = []
    for _ in after:
        screens, *_ = games.step(np.array([STAY]))
        seen.append(ball_and_paddle(screens[0])[0][1])
    assert seen == after
    assert games.speed[0] == -speed  # the way back


def test_a_corner_bounce_on_the_last_frame_is_judged_where_the_ball_lands():
    games = games_at(x=0.0, speed=-1.0, paddle=0, row=SIZE - 2)  # hits the left wall as it lands
    _, rewards, ended, _, info = games.step(np.array([STAY]))
    assert ended[0] and rewards[0] == 1.0  # landed in column 1, on the paddle's right pixel
    assert list(np.nonzero(info["final_obs"][0, 0, -1])[0]) == [0, 1]


def test_the_paddle_moves_a_column_a_frame_and_stops_at_the_edges():
    games = games_at(x=11.0, speed=0.0, paddle=1)
    for action, expected in [(LEFT, 0), (LEFT, 0), (RIGHT, 1), (STAY, 1)]:
        games.step(np.array([action]))
        assert games.paddle[0] == expected
    games = games_at(x=11.0, speed=0.0, paddle=SIZE - PADDLE)
    games.step(np.array([RIGHT]))
    assert games.paddle[0] == SIZE - PADDLE


@pytest.mark.parametrize("paddle,caught", [(8, False), (9, True), (10, True), (11, False)])
def test_reward_exactly_when_the_paddle_overlaps_the_ball_on_the_bottom_row(paddle, caught):
    games = games_at(x=10.0, speed=0.0, paddle=paddle)
    for frame in range(FRAMES):
        _, rewards, ended, _, _ = games.step(np.array([STAY]))
        assert ended[0] == (frame == FRAMES - 1)
        if not ended[0]:
            assert rewards[0] == 0.0
    assert rewards[0] == float(caught)


def test_an_ended_game_restarts_in_the_same_step():
    games = games_at(x=10.0, speed=0.0, paddle=3, row=SIZE - 2)
    screens, _, ended, _, info = games.step(np.array([STAY]))
    assert ended[0] and list(np.nonzero(info["final_obs"][0, 0, -1])[0]) == [3, 4, 10]  # with the ball
    (row, _), paddle = ball_and_paddle(screens[0])
    assert row == 0 and paddle == [(SIZE - PADDLE) // 2, (SIZE - PADDLE) // 2 + 1]


def test_games_are_the_same_from_the_same_seed_and_stay_together():
    runs = []
    for _ in range(2):
        games = CatchVectorEnv(16)
        frames = [games.reset(seed=7)[0]]
        for _ in range(2 * FRAMES):
            screens, _, ended, _, _ = games.step(np.full(16, RIGHT))
            frames.append(screens)
            assert ended.all() or not ended.any()  # started together, they end together
        runs.append(np.stack(frames))
    np.testing.assert_array_equal(*runs)


def test_bad_actions_are_refused():
    with pytest.raises(ValueError, match="actions must be 2 of 0, 1, 2"):
        CatchVectorEnv(2).step(np.array([0, 3]))


def test_it_is_a_registered_gymnasium_environment():
    check_env(gym.make("Catch-v0").unwrapped)
    games = gym.make_vec("Catch-v0", num_envs=4, vectorization_mode="vector_entry_point")
    assert isinstance(games, catch.CatchVectorEnv)
    screens, _ = games.reset(seed=0)
    assert screens.shape == (4, 1, SIZE, SIZE) and screens in games.observation_space


def play_all(policy, count=2000):
    """The catch rate of policy(games, screens) -> actions over count games."""
    games = CatchVectorEnv(count)
    screens, _ = games.reset(seed=0)
    for _ in range(FRAMES):
        screens, rewards, *_ = games.step(policy(games, screens))
    return rewards.mean()


def test_a_paddle_that_knows_where_the_ball_lands_catches_every_ball_and_a_chaser_about_half():
    """The game is winnable by foresight, and following the ball alone is not enough."""
    def towards(games, column):
        return np.where(column < games.paddle, LEFT, np.where(column > games.paddle + 1, RIGHT, STAY))

    def landing(games, screens):
        x, speed = games.x.copy(), games.speed.copy()
        for _ in range(SIZE - 1 - games.row[0]):
            x = x + speed
            speed = np.where((x < 0) | (x > SIZE - 1), -speed, speed)
            x = np.where(x < 0, -x, np.where(x > SIZE - 1, 2 * (SIZE - 1) - x, x))
        return towards(games, np.rint(x))

    def chaser(games, screens):
        return towards(games, screens[:, 0, :-1].reshape(len(screens), -1).argmax(1) % SIZE)

    assert play_all(landing) == 1.0
    assert 0.4 < play_all(chaser) < 0.6


def test_random_play_catches_about_one_ball_in_twelve_the_same_every_time():
    """The baseline the README quotes (python catch.py): random actions on the test games."""
    caught, count = catch.random_play(2000, seed=0)
    assert count == 2000 and 0.05 < caught / count < 0.12
    assert catch.random_play(2000, seed=0) == (caught, count)
    assert catch.random_play(2000, seed=1) != (caught, count)
