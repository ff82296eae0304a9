"""`ZooHyperModel`: a `tlkit.models.zoo` model with BN placement, dropout and depth tuned per block."""

import dataclasses
import functools
import inspect
import re

import keras
from keras import layers

from tlkit.core.errors import TlkitError
from tlkit.models import zoo
from tlkit.models.blocks import BN_PLACEMENTS, conv_bn_act, vgg_block
from tlkit.tuning.constants import DROPOUTS, LEARNING_RATES, OPTIMIZERS, ZOO_PREFIX
from tlkit.tuning.hypermodel import TlkitHyperModel
from tlkit.tuning.space import Tunable


@dataclasses.dataclass(frozen=True)
class BlockLayout:
    """How a zoo model is rebuilt block by block so that every block gets its own BN/dropout.

    Attributes:
        kind: `"vgg"` (`blocks.vgg_block`: n convs then a pool) or `"conv"` (one
            `blocks.conv_bn_act` then a 2x2 max-pool).
        stack: per block `(filters, n_layers)` for vgg, `(filters, padding)` for conv.
        fc: widths of the published dense head.
        drop_after: 1-based indices of the dense layers followed by the head dropout.
        bn: the published BN placement; dropout: the published head dropout.
        filters: the choices for the first block's filters.
        fc_units: choices for the dense width (every dense layer), or () to keep `fc`.
    """

    kind: str
    stack: tuple
    fc: tuple
    drop_after: tuple
    bn: str
    dropout: float
    filters: tuple
    fc_units: tuple = ()


# The zoo models rebuilt block by block (their structure is read from the zoo), and the
# choices tuning offers for them.
BLOCK_MODELS = ("vgg16", "vgg19", "fashion_cnn")
FILTER_CHOICES = (8, 16, 32, 64)
FC_UNIT_CHOICES = (64, 128, 256, 512, 1024, 4096)


@functools.lru_cache(maxsize=None)
def block_layout(name):
    """The `BlockLayout` of zoo model `name`, read from the model `tlkit.models.zoo` builds.

    The model is built once at its smallest input (with a one-unit FC head where the head is
    an option): its `block{i}_conv*` layers give the blocks and their filters, its `fc{j}`
    and `fc{j}_drop` layers the dense head, and the builder's defaults the published BN
    placement and dropout. None for a model that is not in `BLOCK_MODELS`.

    Example:
        >>> block_layout("vgg16").stack
        ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
        >>> block_layout("fashion_cnn").stack, block_layout("fashion_cnn").fc
        (((32, 'same'), (64, 'valid')), (600, 120))
    """
    if name not in BLOCK_MODELS:
        return None
    e = zoo.entry(name)
    params = inspect.signature(e.fn).parameters
    options = {"fc": (1,) * len(params["fc"].default)} if "fc" in params else {}
    size = e.min_size
    model = zoo.build(name, (size, size, e.input_shape[2]), 2, **options)
    names = {layer.name: layer for layer in model.layers}
    stack, kind = [], "vgg"
    while True:
        i = len(stack) + 1
        convs = [l for n, l in names.items() if re.fullmatch(rf"block{i}_conv\d*", n)]
        if not convs:
            break
        if convs[0].name == f"block{i}_conv":  # one conv_bn_act per block
            kind = "conv"
            stack.append((convs[0].filters, convs[0].padding))
        else:
            stack.append((convs[0].filters, len(convs)))
    dense = [l for n, l in names.items() if re.fullmatch(r"fc\d+", n)]
    fc = tuple(params["fc"].default) if "fc" in params else tuple(l.units for l in dense)
    drop_after = tuple(j for j in range(1, len(dense) + 1) if f"fc{j}_drop" in names)
    del model, names, convs, dense
    return BlockLayout(kind, tuple(stack), fc, drop_after, params["bn"].default,
                       params["dropout"].default, FILTER_CHOICES,
                       FC_UNIT_CHOICES if "fc" in params else ())


# Builder options of the other zoo models that are tuned, as Tunable factories.
_OPTION_TUNABLES = {
    "bn": lambda d: Tunable("bn", "choice", d, values=BN_PLACEMENTS),
    "dropout": lambda d: Tunable("dropout", "choice", d, values=DROPOUTS),
    "block_dropout": lambda d: Tunable("block_dropout", "choice", d, values=DROPOUTS),
    "width": lambda d: Tunable("width", "choice", d, values=(0.25, 0.5, 1.0)),
    "blocks_per_stage": lambda d: Tunable("blocks_per_stage", "int", d, min_value=1,
                                          max_value=3),
}


class ZooHyperModel(TlkitHyperModel):
    """A `tlkit.models.zoo` model with its BN placement, dropout, depth/width and optimizer tuned.

    The model takes raw pixels (a `Rescaling(1/255)` layer follows the input) and is built
    from standard layers only, so the best one saves as a plain-Keras `.h5`. With every
    hyperparameter at its default, the network is the published zoo model.

    Args:
        name: a `tlkit.models.zoo.names()` entry (a `zoo:` prefix is accepted).
        input_shape: (height, width, channels); default: the zoo model's published input.
        num_classes: output classes; default: taken from `set_data`.
        **kwargs: see `TlkitHyperModel` (fix, space, epochs, batch_size, seed, ...).

    Example:
        >>> import keras_tuner as kt
        >>> hm = ZooHyperModel("vgg16", (32, 32, 3), num_classes=5, fix=["fc_units=64"])
        >>> hm.build(kt.HyperParameters()).output_shape
        (None, 5)
    """

    def __init__(self, name, input_shape=None, num_classes=None, **kwargs):
        name = name[len(ZOO_PREFIX):] if name.startswith(ZOO_PREFIX) else name
        self.entry = zoo.entry(name)
        self.zoo_name = name
        self.input_shape = tuple(input_shape or self.entry.input_shape)
        if len(self.input_shape) != 3 or self.input_shape[2] not in (1, 3):
            raise TlkitError(f"input_shape must be (height, width, 1 or 3). "
                             f"Received: input_shape={input_shape!r}.")
        self.layout = block_layout(name)
        self.max_blocks = self._max_blocks()
        super().__init__(name=f"zoo_{name}", **{k: v for k, v in kwargs.items()
                                                 if k not in ("fix", "space")})
        self.num_classes = num_classes
        if kwargs.get("fix") or kwargs.get("space"):
            self.override(fix=kwargs.get("fix"), space=kwargs.get("space"))

    def _max_blocks(self):
        size = min(self.input_shape[:2])
        if self.layout is None:
            if size < self.entry.min_size:
                raise TlkitError(f"Input {self.input_shape[0]}x{self.input_shape[1]} is too "
                                 f"small for {self.zoo_name!r}: the minimum is "
                                 f"{self.entry.min_size}x{self.entry.min_size}.")
            return 0
        n = 0
        for _, arg in self.layout.stack:
            size = size - 2 if arg == "valid" else size
            if size // 2 < 1:
                break
            size //= 2
            n += 1
        if n == 0:
            raise TlkitError(f"Input {self.input_shape[0]}x{self.input_shape[1]} is too small "
                             f"for one block of {self.zoo_name!r}.")
        return n

    def declare(self, hp):
        """Declare the zoo model's tunables on `hp`; return their values."""
        v = {}
        lay = self.layout
        if lay is not None:
            n = self.max_blocks
            if n > 1:
                v["blocks"] = self.register(hp, Tunable("blocks", "int", n, min_value=1,
                                                       max_value=n))
            v["filters"] = self.register(hp, Tunable("filters", "choice", lay.stack[0][0],
                                                    values=lay.filters))
            for i in range(1, n + 1):
                parent = ("blocks", tuple(range(i, n + 1))) if n > 1 and i > 1 else None
                v[f"block{i}_bn"] = self.register(hp, Tunable(
                    f"block{i}_bn", "choice", lay.bn, values=BN_PLACEMENTS, parent=parent))
                v[f"block{i}_dropout"] = self.register(hp, Tunable(
                    f"block{i}_dropout", "choice", 0.0, values=DROPOUTS, parent=parent))
            if lay.fc_units:
                v["fc_units"] = self.register(hp, Tunable("fc_units", "choice", lay.fc[0],
                                                         values=lay.fc_units))
            v["dropout"] = self.register(hp, Tunable("dropout", "choice", lay.dropout,
                                                    values=DROPOUTS))
        else:
            params = inspect.signature(self.entry.fn).parameters
            for option, factory in _OPTION_TUNABLES.items():
                if option in params:
                    v[option] = self.register(hp, factory(params[option].default))
        v["learning_rate"] = self.register(hp, Tunable(
            "learning_rate", "float", 1e-3, min_value=LEARNING_RATES[0],
            max_value=LEARNING_RATES[1], sampling="log"))
        v["optimizer"] = self.register(hp, Tunable("optimizer", "choice", "adam",
                                                  values=OPTIMIZERS))
        return v

    def make_model(self, values):
        """The zoo network for `values`, raw pixels in, softmax out."""
        inputs = keras.Input(self.input_shape, name="image")
        x = layers.Rescaling(1.0 / 255.0, name="preprocess_rescale")(inputs)
        lay = self.layout
        if lay is None:
            options = {k: values[k] for k in _OPTION_TUNABLES if k in values}
            outputs = self.entry.fn(x, self.num_classes, **options)
            return keras.Model(inputs, outputs, name=self.zoo_name)
        scale = values["filters"] / lay.stack[0][0]
        for i in range(1, values.get("blocks", 1) + 1):
            filters = max(1, int(round(lay.stack[i - 1][0] * scale)))
            bn, drop = values[f"block{i}_bn"], values[f"block{i}_dropout"]
            if lay.kind == "vgg":
                x = vgg_block(x, filters, lay.stack[i - 1][1], bn=bn, dropout=drop,
                              name=f"block{i}")
            else:
                x = conv_bn_act(x, filters, 3, padding=lay.stack[i - 1][1], bn=bn,
                                name=f"block{i}")
                x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
                if drop:
                    x = layers.Dropout(drop, name=f"block{i}_drop")(x)
        x = layers.Flatten(name="flatten")(x)
        widths = (values["fc_units"],) * len(lay.fc) if "fc_units" in values else lay.fc
        for j, units in enumerate(widths, start=1):
            x = layers.Dense(units, activation="relu", name=f"fc{j}")(x)
            if values["dropout"] and j in lay.drop_after:
                x = layers.Dropout(values["dropout"], name=f"fc{j}_drop")(x)
        outputs = layers.Dense(self.num_classes, activation="softmax", name="predictions")(x)
        return keras.Model(inputs, outputs, name=self.zoo_name)

    def describe(self):
        """JSON-able: the zoo model and its input shape."""
        return {"model": f"{ZOO_PREFIX}{self.zoo_name}", "input_shape": list(self.input_shape)}
