"""`tlkit tune --strategy auto`: the strategy chosen by `tlkit.advise`, the space narrowed."""

import warnings

from tlkit import advise as advise_lib
from tlkit import data as data_lib
from tlkit.core.errors import TlkitError
from tlkit.models.backbones.builders import resolve_input_shape
from tlkit.workflows.checks import channels_note


def auto_strategy(data, backbone, weights, image_size, batch_size, seed, space, fix,
                   load_options, verbose):
    """`--strategy auto` for a search: advise chooses the strategy, and for the fine-tuning
    strategies the unfreeze range narrows to the recommended depth +-1 stage (unless --fix or
    --space already name `unfreeze`). Returns (data, strategy, space, advice)."""
    if backbone is None:
        raise TlkitError("--strategy auto needs --backbone (it measures a pretrained base).")

    dataset = _load_data(data, resolve_input_shape(backbone, image_size), backbone,
                         **load_options)
    advice = advise_lib.advise(dataset, backbone, weights=weights, image_size=image_size,
                               batch_size=batch_size, seed=seed, verbose=0)
    choice = advice.choice
    named = [str(item).split("=")[0] for item in list(space or []) + list(fix or [])]
    space = list(space or [])
    if choice.get("unfreeze") and "unfreeze" not in named:
        n = len(advice.backbones[0]["stages"])
        u = choice["unfreeze"]
        space.append(f"unfreeze={max(1, u - 1)}:{min(n, u + 1)}")
    if verbose:
        print(f"tlkit: --strategy auto chose {choice['strategy']}"
              + (f", unfreeze {space[-1].split('=')[1]}" if choice.get("unfreeze") and
                 "unfreeze" not in named else "") + ": " + "; ".join(choice["reasons"]))
    return dataset, choice["strategy"], space, advice


def _load_data(data, input_shape, name, **kwargs):
    """`data` at `input_shape`, with a warning when its channels are not the model's."""
    dataset = data_lib.load_for(data, input_shape,
                                **({} if isinstance(data, data_lib.Dataset) else kwargs))
    note = channels_note(name, data, dataset, input_shape)
    if note:
        warnings.warn(note, stacklevel=3)
    return dataset
