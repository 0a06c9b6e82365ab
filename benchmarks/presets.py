"""The tables' presets, as data: preset -> table -> `Sweep` (the grid, in Config fields, by keyword).

A table named after a task that its preset does not list uses the preset's "default" sweep with
that task (`benchmarks.tables --task=my_pkg.tasks:MyTask` gets a table with no edit here). The
"gradients" sweep measures at initialisation (no training). Sources of the settings are in the
README (Reproduction tables) and in each cell's docstring.
"""

from experiments.grid import Sweep

CELLS3 = ("rnn", "lstm", "gru")
MODERN = ("indrnn", "cornn", "lem", "exprnn", "lru", "mingru", "minlstm")

# The new tasks' quick tables: small enough for a 2-core CPU (a few minutes a table), 3 seeds.
_QUICK_TASK = {"hidden_size": 64, "batch_size": 32, "steps": 1500, "eval_every": 100, "eval_size": 500, "num_seeds": 3}

# The long tables: every cell at its own paper's settings for the task, read from its official training
# script (file named beside each); where the paper has no such task, a small learning-rate sweep trained in one
# program, each cell reported at its best rate on the validation split. `{seq_len}` is the point's T.
_SWEEP_FAST = (1e-3, 3e-3, 1e-2)
_SWEEP_SLOW = (3e-4, 1e-3, 3e-3)
# IndRNN_Theano_Lasagne adding/adding.py (Li et al. 2018): 2 layers, input weights N(0, 0.001^2), the first
# layer's u ~ U(0, 2^(1/T)), the last layer's u ~ U(2^(-1/T), 2^(1/T)), |u| <= 2^(1/T) after each update,
# gradients clipped elementwise at 10 (no global norm), Adam 2e-4, batch 50. Not carried over: its rate decay
# x0.1 every ~20k steps (past this table's budget).
_INDRNN = {
    "num_layers": 2,
    "cell_options": "bound_steps={seq_len},recurrent_init=uniform|near_one,input_std=0.001",
    "clip_norm": 0.0,
    "clip_value": 10.0,
}
# minimal-LRU lru/model.py (Orvieto et al. 2023): LRU layers joined by the paper's norm-GELU-GLU-residual block,
# eigenvalue moduli in [0.9, 0.999]. The paper trains no copy or adding task: Adam sweep.
_LRU = {"num_layers": 2, "cell_options": "block=glu,r_min=0.9,r_max=0.999"}
_ADDING_CELLS = {
    "indrnn": {**_INDRNN, "learning_rate": 2e-4, "steps": 5000},
    "cornn": {"learning_rate": 2e-2, "clip_norm": 0.0},  # tk-rusch/coRNN adding/adding_task.py: Adam 0.02, no clip
    # tk-rusch/LEM adding (its logs): Adam 2.6e-3, no clipping; the loss leaves the baseline after ~1,500 steps
    "lem": {"learning_rate": 2.6e-3, "clip_norm": 0.0, "steps": 3000},
    # no adding task in its paper: its copy settings' optimiser, at the best rate of a sweep
    "exprnn": {
        "optimizer": "rmsprop",
        "rmsprop_decay": 0.99,
        "learning_rate": _SWEEP_SLOW,
        "lr_multipliers": "recurrent_skew=0.1",
        "clip_norm": 0.0,
    },
    "lru": {**_LRU, "learning_rate": _SWEEP_FAST},
    # not the paper's (no adding there): chrono init of the update gate (rnnlab's option) and Adam 1e-2, which
    # solved T=1000 in 400-800 steps; at the zero bias one seed stayed at 0.92 x baseline for 800 (docs/tables.md)
    "mingru": {"learning_rate": 1e-2, "cell_options": "chrono_tmax=1000"},
    "minlstm": {"learning_rate": _SWEEP_FAST, "cell_options": "chrono_tmax=1000"},
}
_COPY_CELLS = {
    # lezcano/expRNN 1_copying.py (Lezcano-Casado & Martinez-Rubio 2019): hidden 190, batch 128, 4000 steps,
    # RMSprop 2e-4 (PyTorch's alpha 0.99), the orthogonal parameter at lr / 10, no clipping
    "exprnn": {
        "hidden_size": 190,
        "batch_size": 128,
        "steps": 4000,
        "learning_rate": 2e-4,
        "rmsprop_decay": 0.99,
        "lr_multipliers": "recurrent_skew=0.1",
        "clip_norm": 0.0,
    },
    # no copy task in these papers: Adam (their optimiser) at the best rate of a sweep, their own clipping
    "indrnn": {**_INDRNN, "optimizer": "adam", "learning_rate": _SWEEP_SLOW},
    "cornn": {"optimizer": "adam", "learning_rate": (3e-3, 1e-2, 2e-2), "clip_norm": 0.0},
    "lem": {"optimizer": "adam", "learning_rate": _SWEEP_SLOW, "clip_norm": 0.0},
    "lru": {**_LRU, "optimizer": "adam", "learning_rate": _SWEEP_SLOW},
    "mingru": {"optimizer": "adam", "learning_rate": _SWEEP_FAST, "cell_options": "chrono_tmax={seq_len}"},
    "minlstm": {"optimizer": "adam", "learning_rate": _SWEEP_FAST, "cell_options": "chrono_tmax={seq_len}"},
}
ALL_CELLS = ("rnn", "irnn", "lstm", "gru", *MODERN)

PRESETS: dict[str, dict[str, Sweep]] = {
    "smoke": {
        "adding": Sweep(
            settings={
                "task": "adding",
                "hidden_size": 8,
                "batch_size": 8,
                "steps": 20,
                "eval_every": 10,
                "eval_size": 32,
                "num_seeds": 2,
            },
            grid={"cell": ("rnn", "gru"), "seq_len": (6, 12)},
        ),
        "copy": Sweep(
            settings={
                "task": "copy",
                "hidden_size": 8,
                "batch_size": 8,
                "steps": 20,
                "eval_every": 10,
                "eval_size": 32,
                "num_seeds": 2,
            },
            grid={"cell": ("rnn", "gru"), "seq_len": (5, 10)},
        ),
        "gradients": Sweep(
            settings={"task": "adding", "hidden_size": 8, "batch_size": 8, "num_seeds": 2},
            grid={"cell": ("rnn", "lstm"), "seq_len": (10, 20)},
            measure="gradients",
        ),
        "default": Sweep(
            settings={
                "hidden_size": 8,
                "batch_size": 8,
                "steps": 20,
                "eval_every": 10,
                "eval_size": 32,
                "num_seeds": 2,
            },
            grid={"cell": ("rnn", "gru"), "seq_len": (6, 12)},
        ),
    },
    "quick": {
        "adding": Sweep(
            settings={
                "task": "adding",
                "hidden_size": 64,
                "batch_size": 50,
                "steps": 2000,
                "eval_every": 100,
                "eval_size": 500,
                "num_seeds": 2,
            },
            grid={"cell": CELLS3, "seq_len": (50, 100, 200)},
        ),
        "copy": Sweep(
            settings={
                "task": "copy",
                "hidden_size": 64,
                "batch_size": 50,
                "steps": 3000,
                "eval_every": 100,
                "eval_size": 500,
                "num_seeds": 2,
            },
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
            settings={
                "task": "adding",
                "hidden_size": 128,
                "batch_size": 50,
                "steps": 10000,
                "eval_every": 250,
                "num_seeds": 3,
            },
            grid={"cell": CELLS3, "seq_len": (100, 200, 400, 750)},
        ),
        "copy": Sweep(
            settings={
                "task": "copy",
                "hidden_size": 128,
                "batch_size": 20,
                "steps": 20000,
                "optimizer": "rmsprop",
                "eval_every": 500,
                "num_seeds": 3,
            },
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
    # Where the cells differ: all eleven, each at its own settings (above). Adding as in Li et al. 2018 and the LEM
    # logs (hidden 128, batch 50, Adam 1e-3 for the classics); copy in the uRNN protocol (hidden 128, batch 20,
    # RMSprop 1e-3 for the classics; 3000 steps, not its 20k).
    "long": {
        "adding": Sweep(
            settings={
                "task": "adding",
                "hidden_size": 128,
                "batch_size": 50,
                "steps": 1500,
                "eval_every": 200,
                "eval_size": 500,
                "num_seeds": 3,
            },
            grid={"cell": ALL_CELLS, "seq_len": (1000, 2000, 5000)},
            per_cell=_ADDING_CELLS,
        ),
        "copy": Sweep(
            settings={
                "task": "copy",
                "hidden_size": 128,
                "batch_size": 20,
                "steps": 3000,
                "optimizer": "rmsprop",
                "eval_every": 100,
                "eval_size": 500,
                "num_seeds": 3,
            },
            grid={"cell": ALL_CELLS, "seq_len": (200, 500, 1000)},
            per_cell=_COPY_CELLS,
        ),
        "default": Sweep(
            settings={
                "hidden_size": 128,
                "batch_size": 50,
                "steps": 1500,
                "eval_every": 200,
                "eval_size": 500,
                "num_seeds": 3,
            },
            grid={"cell": ALL_CELLS, "seq_len": (500, 1000, 2000)},
            per_cell=_ADDING_CELLS,
        ),
    },
}
