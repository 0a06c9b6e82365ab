"""The tables' presets, as data: preset -> table -> `Sweep` (the grid, in Config fields, by keyword).

A table named after a task that its preset does not list uses the preset's "default" sweep with
that task (`benchmarks.tables --task=my_pkg.tasks:MyTask` gets a table with no edit here). The
"gradients" sweep measures at initialisation (no training). Sources of the settings are in the
README (Reproduction tables) and in each cell's docstring.
"""

from experiments.sweep import Sweep

CELLS3 = ("rnn", "lstm", "gru")
MODERN = ("indrnn", "cornn", "lem", "exprnn", "lru", "mingru", "minlstm")

# The new tasks' quick tables: small enough for a 2-core CPU (a few minutes a table), 3 seeds.
_QUICK_TASK = {"hidden_size": 64, "batch_size": 32, "steps": 1500, "eval_every": 100, "eval_size": 500, "num_seeds": 3}

# Published per-cell settings (each cell's paper; see the cells' docstrings): optimizer, rate, depth.
_ADDING_CELLS = {
    "indrnn": {"num_layers": 2, "learning_rate": 2e-4, "cell_options": "max_recurrent=1.0"},  # Li et al. 2018
    "cornn": {"learning_rate": 2e-2},  # Rusch & Mishra 2021, adding
    "lem": {"learning_rate": 2.6e-3},  # Rusch et al. 2022, official adding logs
    "exprnn": {"optimizer": "rmsprop", "learning_rate": 2e-4, "lr_multipliers": "recurrent_skew=0.1"},
    "lru": {"num_layers": 2},
    # not the paper's (no adding there): chrono init of the update gate (rnnlab's option) and Adam 1e-2, which
    # solved T=1000 in 400-800 steps; at the zero bias one seed stayed at 0.92 x baseline for 800 (docs/tables.md)
    "mingru": {"learning_rate": 1e-2, "cell_options": "chrono_tmax=1000"},
}
_COPY_CELLS = {
    # Lezcano-Casado & Martinez-Rubio 2019, copying: RMSprop 2e-4, the orthogonal parameter at lr / 10
    "exprnn": {"learning_rate": 2e-4, "lr_multipliers": "recurrent_skew=0.1"},
    "indrnn": {"num_layers": 2, "cell_options": "max_recurrent=1.0"},
    "lru": {"num_layers": 2},
}

PRESETS: dict[str, dict[str, Sweep]] = {
    "smoke": {
        "adding": Sweep(
            settings={"task": "adding", "hidden_size": 8, "batch_size": 8, "steps": 20, "eval_every": 10,
                      "eval_size": 32, "num_seeds": 2},
            grid={"cell": ("rnn", "gru"), "seq_len": (6, 12)},
        ),
        "copy": Sweep(
            settings={"task": "copy", "hidden_size": 8, "batch_size": 8, "steps": 20, "eval_every": 10,
                      "eval_size": 32, "num_seeds": 2},
            grid={"cell": ("rnn", "gru"), "seq_len": (5, 10)},
        ),
        "gradients": Sweep(
            settings={"task": "adding", "hidden_size": 8, "batch_size": 8, "num_seeds": 2},
            grid={"cell": ("rnn", "lstm"), "seq_len": (10, 20)},
            measure="gradients",
        ),
        "default": Sweep(
            settings={"hidden_size": 8, "batch_size": 8, "steps": 20, "eval_every": 10, "eval_size": 32,
                      "num_seeds": 2},
            grid={"cell": ("rnn", "gru"), "seq_len": (6, 12)},
        ),
    },
    "quick": {
        "adding": Sweep(
            settings={"task": "adding", "hidden_size": 64, "batch_size": 50, "steps": 2000, "eval_every": 100,
                      "eval_size": 500, "num_seeds": 2},
            grid={"cell": CELLS3, "seq_len": (50, 100, 200)},
        ),
        "copy": Sweep(
            settings={"task": "copy", "hidden_size": 64, "batch_size": 50, "steps": 3000, "eval_every": 100,
                      "eval_size": 500, "num_seeds": 2},
            grid={"cell": CELLS3, "seq_len": (10, 20, 40)},
        ),
        "gradients": Sweep(
            settings={"task": "adding", "hidden_size": 128, "batch_size": 32, "num_seeds": 3},
            grid={"cell": (*CELLS3, "lstm_fb0"), "seq_len": (50, 100, 200, 500, 1000)},
            measure="gradients",
        ),
        # CPU-sized options (the sources' defaults, e.g. 16 symbols or an 8192-token vocabulary, are far larger)
        "selective_copy": Sweep(
            settings={"task": "selective_copy", "task_options": "num_symbols=4,vocab_size=10", **_QUICK_TASK},
            grid={"cell": CELLS3, "seq_len": (16, 32)},
        ),
        "associative_recall": Sweep(
            settings={"task": "associative_recall", "task_options": "num_kv_pairs=4,vocab_size=64", **_QUICK_TASK},
            grid={"cell": CELLS3, "seq_len": (32, 64)},
        ),
        "temporal_order": Sweep(
            settings={"task": "temporal_order", **_QUICK_TASK}, grid={"cell": CELLS3, "seq_len": (50, 100)}
        ),
        "digits": Sweep(settings={"task": "digits", **_QUICK_TASK}, grid={"cell": CELLS3, "seq_len": (64,)}),
        "permuted_digits": Sweep(
            settings={"task": "permuted_digits", **_QUICK_TASK}, grid={"cell": CELLS3, "seq_len": (64,)}
        ),
        "default": Sweep(settings=_QUICK_TASK, grid={"cell": CELLS3, "seq_len": (50, 100, 200)}),
    },
    # The literature's grid (see README): hidden 128, 3 seeds. Adding in the setting of Li et al. 2018
    # and the LEM logs (batch 50, Adam); copy in the uRNN protocol (batch 20, RMSprop 1e-3, 20k steps).
    "paper": {
        "adding": Sweep(
            settings={"task": "adding", "hidden_size": 128, "batch_size": 50, "steps": 10000, "eval_every": 250,
                      "num_seeds": 3},
            grid={"cell": CELLS3, "seq_len": (100, 200, 400, 750)},
        ),
        "copy": Sweep(
            settings={"task": "copy", "hidden_size": 128, "batch_size": 20, "steps": 20000, "optimizer": "rmsprop",
                      "eval_every": 500, "num_seeds": 3},
            grid={"cell": CELLS3, "seq_len": (100, 200, 500, 1000)},
        ),
        "gradients": Sweep(
            settings={"task": "adding", "hidden_size": 128, "batch_size": 32, "num_seeds": 3},
            grid={"cell": (*CELLS3, "lstm_fb0"), "seq_len": (100, 200, 400, 750, 1000)},
            measure="gradients",
        ),
        "default": Sweep(
            settings={"hidden_size": 128, "batch_size": 50, "steps": 10000, "eval_every": 250, "num_seeds": 3},
            grid={"cell": CELLS3, "seq_len": (100, 200, 400)},
        ),
    },
    # Where the cells differ: the long-memory cells beside lstm and gru, each at its paper's settings.
    # Adding as in Li et al. 2018 and the LEM logs (hidden 128, batch 50, Adam); copy in the uRNN protocol
    # (hidden 128, batch 20, RMSprop 1e-3; 3000 steps, not its 20k: about half an hour per point on a 2-core CPU).
    "long": {
        "adding": Sweep(
            settings={"task": "adding", "hidden_size": 128, "batch_size": 50, "steps": 6000, "eval_every": 200,
                      "eval_size": 500, "num_seeds": 3},
            grid={"cell": ("lstm", "gru", *MODERN), "seq_len": (500, 1000, 2000, 5000)},
            per_cell=_ADDING_CELLS,
        ),
        "copy": Sweep(
            settings={"task": "copy", "hidden_size": 128, "batch_size": 20, "steps": 3000, "optimizer": "rmsprop",
                      "eval_every": 100, "eval_size": 500, "num_seeds": 3},
            grid={"cell": ("lstm", "gru", *MODERN), "seq_len": (200, 500, 1000)},
            per_cell=_COPY_CELLS,
        ),
        "default": Sweep(
            settings={"hidden_size": 128, "batch_size": 50, "steps": 6000, "eval_every": 200, "eval_size": 500,
                      "num_seeds": 3},
            grid={"cell": ("lstm", "gru", *MODERN), "seq_len": (500, 1000, 2000)},
            per_cell=_ADDING_CELLS,
        ),
    },
}  # fmt: skip
