"""Names and limits shared by the tuning modules."""

TUNERS = ("random", "hyperband", "bayesian")
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min", "accuracy": "max", "loss": "min"}
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")
DROPOUTS = tuple(round(0.05 * i, 2) for i in range(13))  # 0.0 .. 0.6
LEARNING_RATES = (1e-4, 1e-2)
FINE_TUNE_LEARNING_RATES = (1e-6, 1e-3)
HEAD_WIDTHS = (0, 64, 128, 256, 512)
ALIASES = {"bn": r"(.+_)?bn", "block_dropout": r"block\d+_dropout"}
ALIAS_HELP = {"bn": "every BN placement", "block_dropout": "every per-block dropout"}

SETTINGS_FILE = "search.json"
PROJECT = "tuner"
MODEL_FILE = "best.h5"
REPORT_FILES = ("trials.json", "trials.csv", "trials.png", MODEL_FILE, "report")
OWNERS_FILE = "tlkit_trial_owners.json"
ENV_TUNER_ID = "KERASTUNER_TUNER_ID"
ENV_ORACLE_IP = "KERASTUNER_ORACLE_IP"
ENV_ORACLE_PORT = "KERASTUNER_ORACLE_PORT"
ZOO_PREFIX = "zoo:"
