"""Locust users that behave like training processes logging to an MLflow server.

Each user is one training process: it finds (or creates) the experiment by name,
creates a run, logs its hyper-parameters in one ``runs/log-batch``, then every
step logs a few metrics with ``runs/log-metric`` (a ``runs/log-batch`` of metrics
now and then, a ``runs/set-tag`` now and then), thinks for a while, and after
``--steps-per-run`` steps ends the run (``runs/update`` status FINISHED) and starts
the next one. Only MLflow's stock REST API is used, so the same command loads the
ingestion gateway and a stock ``mlflow server`` alike.

    locust -f loadtest/locustfile.py --headless -u 200 -r 20 -t 5m \\
        --host http://127.0.0.1:5000 --steps-per-run 100 --think-time 1

Every option below is also read from its environment variable. When a run ends,
the number of metric points the server acknowledged for it is written to the run
tag ``loadtest.metric_points``, so a read-back can check that nothing was lost.
With ``--shape ramp`` the user count ramps linearly to ``--users`` over
``--ramp-seconds``, holds for ``--steady-seconds`` and the test stops.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from typing import Any
from urllib.parse import urlencode

import gevent
import locust.stats
from gevent.lock import Semaphore
from locust import FastHttpUser, LoadTestShape, events, task
from locust.exception import StopUser
from locust.runners import WorkerRunner

API_PREFIX = "/api/2.0/mlflow"
POINTS_TAG = "loadtest.metric_points"
STEP_METRICS = ["loss", "accuracy", "learning_rate", "grad_norm", "throughput", "gpu_utilization"]
# MLflow's log-batch limits: 1000 metrics, 100 params per request.
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100

_user_numbers = itertools.count()
# One experiment lookup per process: users of a process share the id, and the
# lock keeps hundreds of users starting at once from racing to create it.
_experiment_ids: dict[str, str] = {}
_experiment_lock = Semaphore()


@events.init_command_line_parser.add_listener
def add_arguments(parser) -> None:
    """Register the training-load options (each with an environment variable)."""
    parser.add_argument(
        "--experiment-name", env_var="LOADTEST_EXPERIMENT_NAME", default="locust-loadtest",
        help="Experiment the runs are logged to; created when missing, reused by name otherwise.",
    )
    parser.add_argument(
        "--steps-per-run", type=int, env_var="LOADTEST_STEPS_PER_RUN", default=100,
        help="Training steps of a run before it is ended (FINISHED) and a new one starts.",
    )
    parser.add_argument(
        "--metric-keys", type=int, env_var="LOADTEST_METRIC_KEYS", default=3,
        help="runs/log-metric calls per step, one metric key each.",
    )
    parser.add_argument(
        "--batch-size", type=int, env_var="LOADTEST_BATCH_SIZE", default=50,
        help="Metrics in each runs/log-batch of metrics (at most 1000).",
    )
    parser.add_argument(
        "--batch-every", type=int, env_var="LOADTEST_BATCH_EVERY", default=10,
        help="A runs/log-batch of metrics every N steps; 0 never.",
    )
    parser.add_argument(
        "--params", type=int, env_var="LOADTEST_PARAMS", default=20,
        help="Params logged in one runs/log-batch when a run starts (at most 100); 0 none.",
    )
    parser.add_argument(
        "--tag-every", type=int, env_var="LOADTEST_TAG_EVERY", default=25,
        help="A runs/set-tag every N steps; 0 never.",
    )
    parser.add_argument(
        "--think-time", type=float, env_var="LOADTEST_THINK_TIME", default=1.0,
        help="Mean seconds between two steps of a user (the time a training step takes).",
    )
    parser.add_argument(
        "--think-jitter", type=float, env_var="LOADTEST_THINK_JITTER", default=0.5,
        help="Think time varies uniformly by this fraction either side of the mean.",
    )
    parser.add_argument(
        "--runs-per-user", type=int, env_var="LOADTEST_RUNS_PER_USER", default=0,
        help="Runs a user performs before it stops; 0 without end.",
    )
    parser.add_argument(
        "--shape", choices=["off", "ramp"], env_var="LOADTEST_SHAPE", default="off",
        help="off: --users, --spawn-rate and --run-time as usual. ramp: ramp to --users over "
        "--ramp-seconds, hold for --steady-seconds, then stop.",
    )
    parser.add_argument(
        "--ramp-seconds", type=float, env_var="LOADTEST_RAMP_SECONDS", default=60.0,
        help="With --shape ramp: seconds to grow linearly from 1 user to --users.",
    )
    parser.add_argument(
        "--steady-seconds", type=float, env_var="LOADTEST_STEADY_SECONDS", default=300.0,
        help="With --shape ramp: seconds to hold --users after the ramp.",
    )


@events.init.add_listener
def check_options(environment, **_kwargs) -> None:
    """Reject impossible settings and drop the load shape unless it was asked for."""
    options = environment.parsed_options
    if options is None:  # run as a library without a command line
        return
    problems = []
    if options.steps_per_run < 1:
        problems.append("--steps-per-run must be at least 1")
    if options.metric_keys < 0:
        problems.append("--metric-keys must not be negative")
    if not 1 <= options.batch_size <= MAX_BATCH_METRICS:
        problems.append(f"--batch-size must be between 1 and {MAX_BATCH_METRICS}")
    if not 0 <= options.params <= MAX_BATCH_PARAMS:
        problems.append(f"--params must be between 0 and {MAX_BATCH_PARAMS}")
    if min(options.batch_every, options.tag_every, options.runs_per_user) < 0:
        problems.append("--batch-every, --tag-every and --runs-per-user must not be negative")
    if options.think_time < 0 or not 0 <= options.think_jitter <= 1:
        problems.append("--think-time must not be negative and --think-jitter must be between 0 and 1")
    if options.ramp_seconds < 0 or options.steady_seconds < 0:
        problems.append("--ramp-seconds and --steady-seconds must not be negative")
    if problems:
        raise ValueError("; ".join(problems))
    if options.shape == "off":
        # Locust uses any shape class it finds; without it --users, --spawn-rate
        # and --run-time (and the web UI's fields) work as in any locustfile.
        environment.shape_class = None
    if options.csv_prefix and not isinstance(environment.runner, WorkerRunner):
        environment.events.quit.add_listener(let_csv_writer_catch_up)


def let_csv_writer_catch_up(**_kwargs) -> None:
    """Give locust's periodic --csv writer one more pass before the files are closed.

    Locust rewrites the --csv files every CSV_STATS_INTERVAL_SEC and closes them
    at exit without a last write, so the requests of the final interval and of
    the users' stop (their last step, runs ended in on_stop) would be missing
    from them while the HTML report and the printed summary have them.
    """
    gevent.sleep(locust.stats.CSV_STATS_INTERVAL_SEC + 0.5)


def now_ms() -> int:
    """Wall-clock time in milliseconds, MLflow's timestamp unit."""
    return int(time.time() * 1000)


def step_metric_keys(count: int) -> list[str]:
    """The keys logged one by one every step: familiar names first, then numbered ones."""
    return [STEP_METRICS[i] if i < len(STEP_METRICS) else f"metric_{i}" for i in range(count)]


def metric_value(key: str, step: int, steps: int) -> float:
    """A plausible value of ``key`` at ``step`` of a run of ``steps`` steps."""
    progress = step / max(steps - 1, 1)
    if key == "loss":
        return round(2.5 * math.exp(-3 * progress) + random.uniform(0, 0.05), 6)
    if key == "accuracy":
        return round(min(1.0, 0.1 + 0.85 * (1 - math.exp(-4 * progress)) + random.uniform(-0.01, 0.01)), 6)
    if key == "learning_rate":
        return round(1e-3 * 0.5 * (1 + math.cos(math.pi * progress)), 9)
    return round(random.uniform(0, 100), 4)


class TrainingProcess(FastHttpUser):
    """One training process: runs one after another, a step of logging per task."""

    def on_start(self) -> None:
        """Read the options and find the experiment; the first run starts with the first step."""
        options = self.environment.parsed_options
        self.number = next(_user_numbers)
        self.steps_per_run = options.steps_per_run
        self.metric_keys = step_metric_keys(options.metric_keys)
        self.batch_keys = [f"layer_{i:03d}/weight_norm" for i in range(options.batch_size)]
        self.batch_every = options.batch_every
        self.param_count = options.params
        self.tag_every = options.tag_every
        self.runs_per_user = options.runs_per_user
        self.think_time = options.think_time
        self.think_jitter = options.think_jitter
        # A random phase keeps users that started together from batching in lockstep.
        self.phase = random.randrange(max(self.batch_every, self.tag_every, 1))
        self.experiment_id = self.experiment(options.experiment_name)
        self.runs_started = 0
        self.run_id: str | None = None
        self.step_number = 0
        self.points = 0

    def wait_time(self) -> float:
        """Think time between steps, jittered around the mean."""
        return self.think_time * random.uniform(1 - self.think_jitter, 1 + self.think_jitter)

    @task
    def step(self) -> None:
        """One training step: start a run if none is open, log the step's metrics, end the run at its last step."""
        if self.run_id is None:
            if self.runs_per_user and self.runs_started >= self.runs_per_user:
                raise StopUser()
            self.start_run()
            if self.run_id is None:
                return
        step = self.step_number
        timestamp = now_ms()
        for key in self.metric_keys:
            self.log_metric(key, metric_value(key, step, self.steps_per_run), timestamp, step)
        if self.batch_every and (step + self.phase) % self.batch_every == 0:
            self.log_metric_batch(step, timestamp)
        if self.tag_every and (step + self.phase) % self.tag_every == 0:
            self.set_tag("checkpoint", f"step-{step}")
        self.step_number += 1
        if self.step_number >= self.steps_per_run:
            self.end_run("FINISHED")

    def on_stop(self) -> None:
        """A process stopped mid-run ends its run as KILLED, as MLflow's client does on interrupt."""
        if getattr(self, "run_id", None) is not None:
            self.end_run("KILLED")

    # --- MLflow calls -----------------------------------------------------------

    def post(self, endpoint: str, body: dict[str, Any], name: str | None = None):
        """POST a JSON body to an MLflow endpoint; the stats row is the endpoint (or ``name``)."""
        return self.client.post(API_PREFIX + "/" + endpoint, json=body, name=name or endpoint)

    def experiment(self, name: str) -> str:
        """The id of experiment ``name``, created if missing (once per process)."""
        with _experiment_lock:
            if name not in _experiment_ids:
                _experiment_ids[name] = self.get_or_create_experiment(name)
            return _experiment_ids[name]

    def get_or_create_experiment(self, name: str) -> str:
        """Look the experiment up by name; create it when the server says it does not exist."""
        path = API_PREFIX + "/experiments/get-by-name?" + urlencode({"experiment_name": name})
        for _ in range(2):
            with self.client.get(path, name="experiments/get-by-name", catch_response=True) as response:
                if response.status_code == 200:
                    return response.json()["experiment"]["experiment_id"]
                if response.status_code != 404:
                    response.failure(f"HTTP {response.status_code}: {response.text}")
                    raise StopUser()
                # Missing is an expected answer here, not a failed request.
                response.success()
            with self.client.post(
                API_PREFIX + "/experiments/create", json={"name": name}, name="experiments/create", catch_response=True
            ) as response:
                if response.status_code == 200:
                    return response.json()["experiment_id"]
                if "RESOURCE_ALREADY_EXISTS" not in (response.text or ""):
                    response.failure(f"HTTP {response.status_code}: {response.text}")
                    raise StopUser()
                # Another process created it between our lookup and create.
                response.success()
        raise StopUser()

    def start_run(self) -> None:
        """Create a run and log its params in one log-batch."""
        self.runs_started += 1
        response = self.post("runs/create", {
            "experiment_id": self.experiment_id,
            "start_time": now_ms(),
            "run_name": f"locust-{self.number}-{self.runs_started}",
            "tags": [{"key": "loadtest.user", "value": str(self.number)}],
        })
        if response.status_code != 200:
            return
        self.run_id = response.json()["run"]["info"]["run_id"]
        self.step_number = 0
        self.points = 0
        if self.param_count:
            params = [{"key": f"param_{i:02d}", "value": str(random.choice([16, 32, 64, 128]) * (i + 1))}
                      for i in range(self.param_count)]
            self.post("runs/log-batch", {"run_id": self.run_id, "params": params}, name="runs/log-batch (params)")

    def log_metric(self, key: str, value: float, timestamp: int, step: int) -> None:
        """Log one metric point; count it when the server acknowledged it."""
        response = self.post("runs/log-metric", {
            "run_id": self.run_id, "key": key, "value": value, "timestamp": timestamp, "step": step,
        })
        if response.status_code == 200:
            self.points += 1

    def log_metric_batch(self, step: int, timestamp: int) -> None:
        """Log ``--batch-size`` metrics of this step in one log-batch."""
        metrics = [{"key": key, "value": round(random.uniform(0, 10), 4), "timestamp": timestamp, "step": step}
                   for key in self.batch_keys]
        response = self.post("runs/log-batch", {"run_id": self.run_id, "metrics": metrics},
                             name="runs/log-batch (metrics)")
        if response.status_code == 200:
            self.points += len(metrics)

    def set_tag(self, key: str, value: str) -> None:
        """Set one run tag."""
        self.post("runs/set-tag", {"run_id": self.run_id, "key": key, "value": value})

    def end_run(self, status: str) -> None:
        """Record the acknowledged point count in a tag, then end the run with ``status``."""
        run_id, self.run_id = self.run_id, None
        self.post("runs/set-tag", {"run_id": run_id, "key": POINTS_TAG, "value": str(self.points)})
        self.post("runs/update", {"run_id": run_id, "status": status, "end_time": now_ms()})


class RampThenSteady(LoadTestShape):
    """Ramp linearly to ``--users`` over ``--ramp-seconds``, hold ``--steady-seconds``, stop.

    Active only with ``--shape ramp``. Users are started at ``--spawn-rate`` per
    second as the target grows; ``--run-time``, when given, still ends the test.
    """

    use_common_options = True

    def tick(self):
        """The (user count, spawn rate) for now, or None when the test is over."""
        options = self.runner.environment.parsed_options
        elapsed = self.get_run_time()
        if options.run_time and elapsed >= options.run_time:
            return None
        users = max(options.num_users or 1, 1)
        spawn_rate = options.spawn_rate or max(users / max(options.ramp_seconds, 1), 1)
        if elapsed < options.ramp_seconds:
            return max(1, math.ceil(users * elapsed / options.ramp_seconds)), spawn_rate
        if elapsed < options.ramp_seconds + options.steady_seconds:
            return users, spawn_rate
        return None
