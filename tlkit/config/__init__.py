"""Run settings and recipe files: flags, defaults and the files that hold them.

Contract: `settings` holds the run settings as dataclasses (each field's default, flag, help
and choices), from which the CLI's flags, `tlkit.finetune`'s defaults and settings.yaml are
built; `recipes` reads and writes recipe files. Imports only `tlkit.core`, and no TensorFlow
or Keras: `tlkit COMMAND --help` is built from here.
"""
