"""The Mahalanobis "unknown" score that every artifact carries: its parameters, its Keras layer.

tlkit's default unknown score (issue 24, measured in bench/bench_calibration.py) is the
smallest squared Mahalanobis distance from an image's features (the head's input, the output
of `head_pool`) to a class mean, with one shared covariance Σ (Lee et al., NeurIPS 2018):

    score(f) = min_c || f W - m_c ||^2,   W = inv(chol(Σ)).T,   m_c = mean_c W

`tlkit.calibrate` fits the means and Σ on training features (`FeatureScore.fit`); this module
is where they live afterwards:

- `.h5`: the HDF5 group `tlkit_unknown` (datasets `whiten` (D, D) and `centres` (C, D)) at the
  file's root, beside Keras's `model_weights` (Keras reads only its own keys, so
  `keras.models.load_model` is unaffected);
- `.keras`: the zip entry `tlkit_unknown.npz`, beside Keras's own entries;
- SavedModel, TFLite, ONNX: inside the graph, as constants of a second output
  `unknown_score` (`scored_model`);
- in memory, metadata's `calibration.unknown.params`: a `FeatureScore`, written to JSON as a
  summary (`to_json`), so report.json and the JSON beside exports stay small.

`scored_model(model, fs)` is the model with that second output: the model's own layers plus a
`MahalanobisScore` layer on the feature layer's output. It is built when an artifact is
exported or predicted with, never saved as a Keras file: plain Keras loads tlkit's `.h5` and
`.keras` without tlkit's classes.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(size=(200, 4)); y = np.arange(200) % 2; f[y == 1] += 3
    >>> fs = FeatureScore.fit(f, y, layer="head_pool")
    >>> bool(fs.scores(np.zeros((1, 4)))[0] < fs.scores(np.full((1, 4), 20.0))[0])
    True
"""

import dataclasses
import io
import weakref

import numpy as np

H5_GROUP = "tlkit_unknown"
ZIP_ENTRY = "tlkit_unknown.npz"
FEATURE_LAYERS = ("head_pool", "head_flatten")  # the head's input (training.frozen's cut)
KIND = "mahalanobis"
SCORE_NAME = "unknown_score"


@dataclasses.dataclass(eq=False)
class FeatureScore:
    """A fitted Mahalanobis score: `layer` (whose output are the features), `whiten` (D, D),
    `centres` (C, D) = class means @ whiten."""

    layer: str
    whiten: np.ndarray
    centres: np.ndarray

    @classmethod
    def fit(cls, features, labels, *, layer, covariance="ledoit_wolf"):
        """Fit class means and one shared covariance (Ledoit-Wolf shrinkage) on features."""
        f = np.asarray(features, "float64")
        y = np.asarray(labels).astype(int)
        classes = np.unique(y)
        means = np.stack([f[y == c].mean(axis=0) for c in classes])
        whiten = whitener(f - means[np.searchsorted(classes, y)], covariance)
        return cls(layer, whiten.astype("float32"), (means @ whiten).astype("float32"))

    def __eq__(self, other):
        return (isinstance(other, FeatureScore) and self.layer == other.layer
                and np.array_equal(self.whiten, other.whiten)
                and np.array_equal(self.centres, other.centres))

    __hash__ = None

    @property
    def dim(self):
        return int(self.whiten.shape[0])

    def scores(self, features):
        """Squared distance to the nearest centre (N,), float64 (higher = more unknown)."""
        fw = np.asarray(features, "float64").reshape(len(features), -1) @ self.whiten
        c = self.centres.astype("float64")
        d = (fw ** 2).sum(1)[:, None] - 2 * fw @ c.T + (c ** 2).sum(1)[None]
        return np.maximum(d.min(axis=1), 0.0)

    def to_json(self):
        """What JSON files show of it (the arrays are stored in binary, see the module doc)."""
        return {"kind": KIND, "layer": self.layer, "dim": self.dim,
                "classes": int(self.centres.shape[0]),
                "stored": f".h5: group {H5_GROUP}; .keras: {ZIP_ENTRY}; exports: in the graph"}

    def npz_bytes(self):
        """The arrays as an `.npz` file's bytes (what `.keras` files hold)."""
        buf = io.BytesIO()
        np.savez(buf, whiten=self.whiten, centres=self.centres, layer=np.array(self.layer))
        return buf.getvalue()

    @classmethod
    def from_npz_bytes(cls, data):
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(str(z["layer"]), z["whiten"], z["centres"])

    def write_h5(self, f):
        """Write into an open `h5py.File` (replacing an older group)."""
        if H5_GROUP in f:
            del f[H5_GROUP]
        g = f.create_group(H5_GROUP)
        g.create_dataset("whiten", data=self.whiten)
        g.create_dataset("centres", data=self.centres)
        g.attrs["layer"] = self.layer

    @classmethod
    def read_h5(cls, f):
        """The FeatureScore in an open `h5py.File`, or None."""
        if H5_GROUP not in f:
            return None
        g = f[H5_GROUP]
        layer = g.attrs["layer"]
        return cls(layer.decode() if isinstance(layer, bytes) else str(layer),
                   np.asarray(g["whiten"]), np.asarray(g["centres"]))


def whitener(centred, covariance="ledoit_wolf"):
    """W (D, D) with `W @ W.T` the inverse covariance of the centred rows (N, D).

    Args:
        centred: rows less their means (their class's, or the overall one).
        covariance: `"ledoit_wolf"` (shrunk towards a scaled identity by Ledoit and Wolf's
            formula) or `"pooled"` (the plain covariance); both get a 1e-6 ridge floor.
    """
    from sklearn.covariance import ledoit_wolf  # here: loading a model needs none of it

    if covariance == "ledoit_wolf":
        cov = ledoit_wolf(centred, assume_centered=True)[0]
    elif covariance == "pooled":
        cov = centred.T @ centred / max(len(centred) - 1, 1)
    else:
        raise ValueError(f"covariance must be ledoit_wolf or pooled. "
                         f"Received: covariance={covariance!r}")
    cov = cov + np.eye(len(cov)) * 1e-6 * max(np.trace(cov) / len(cov), 1e-12)
    # cov = L L^T (Cholesky): x @ inv(L).T has squared norm x^T cov^-1 x
    return np.linalg.inv(np.linalg.cholesky(cov)).T


def of(metadata):
    """The metadata's `FeatureScore`, or None (no feature score, or only its JSON summary)."""
    unk = ((metadata or {}).get("calibration") or {}).get("unknown") or {}
    params = unk.get("params")
    return params if isinstance(params, FeatureScore) else None


def attach(metadata, fs):
    """Put `fs` (or nothing, for None) back into `metadata`'s unknown dict, in place."""
    unk = ((metadata or {}).get("calibration") or {}).get("unknown")
    if unk is not None and fs is not None and unk.get("score") == KIND:
        unk["params"] = fs
    return metadata


def feature_layer(model):
    """The name of `model`'s feature layer (the head's input), or None."""
    names = {layer.name for layer in getattr(model, "layers", ())}
    return next((n for n in FEATURE_LAYERS if n in names), None)


def feature_model(model, layer=None):
    """`model`'s inputs -> [its features, its output] (one pass gives both).

    One per model and layer, kept while the model lives: the test pass and calibration's
    validation pass then share one traced predict function (a new model traces it again,
    about 0.3 s, a tenth of calibration's time budget in a 19 s run)."""
    import keras

    layer = layer or feature_layer(model)
    built = _FEATURE_MODELS.setdefault(model, {})
    if layer not in built:
        built[layer] = keras.Model(model.inputs, [model.get_layer(layer).output,
                                                  model.outputs[0]],
                                   name="features_and_probabilities")
    return built[layer]


_FEATURE_MODELS = weakref.WeakKeyDictionary()


def _score_layer_class():
    import keras

    class MahalanobisScore(keras.layers.Layer):
        """min_c ||f W - m_c||^2, with W and the centres fixed (tlkit.deploy.feature_score)."""

        def __init__(self, whiten, centres, **kwargs):
            super().__init__(trainable=False, dtype="float32", **kwargs)
            self._init = (np.asarray(whiten, "float32"), np.asarray(centres, "float32"))

        def build(self, input_shape):
            w, c = self._init
            self.whiten = self.add_weight(shape=w.shape, name="whiten", trainable=False,
                                          initializer=keras.initializers.Constant(w))
            self.centres = self.add_weight(shape=c.shape, name="centres", trainable=False,
                                           initializer=keras.initializers.Constant(c))
            self.centre_norms = self.add_weight(
                shape=(c.shape[0],), name="centre_norms", trainable=False,
                initializer=keras.initializers.Constant((c.astype("float64") ** 2).sum(1)))

        def call(self, features):
            ops = keras.ops
            f = ops.reshape(ops.cast(features, "float32"), (ops.shape(features)[0], -1))
            fw = ops.matmul(f, self.whiten)
            d = (ops.sum(fw * fw, axis=-1, keepdims=True)
                 - 2.0 * ops.matmul(fw, ops.transpose(self.centres)) + self.centre_norms)
            return ops.maximum(ops.min(d, axis=-1), 0.0)

    return MahalanobisScore


def scored_model(model, fs):
    """`model` with a second output, `unknown_score` (N,) of `fs` on its feature layer."""
    import keras

    layer_cls = _score_layer_class()
    score = layer_cls(fs.whiten, fs.centres, name=SCORE_NAME)(model.get_layer(fs.layer).output)
    return keras.Model(model.inputs, [model.outputs[0], score], name=f"{model.name}_scored")


def split_outputs(outputs):
    """`(probabilities, unknown scores or None)` from a runtime's list of outputs: the
    probabilities are the output of rank 2, the score the one of rank 1."""
    if not isinstance(outputs, (list, tuple)):
        return np.asarray(outputs), None
    arrays = [np.asarray(o) for o in outputs]
    probs = next((a for a in arrays if a.ndim == 2), arrays[0])
    score = next((a for a in arrays if a.ndim == 1), None)
    return probs, score


def graph_model(model, metadata, quantize="none"):
    """`(the model an export converts, its FeatureScore or None)`: `scored_model` when the
    metadata has a feature score, else `model`. int8 TFLite leaves the score out: a squared
    distance in the thousands, quantized to 256 levels with its matmul, cannot hold a
    threshold (`tlkit predict --reject` on such a file says so)."""
    fs = of(metadata)
    if fs is None or quantize == "int8" or fs.layer not in {
            layer.name for layer in model.layers}:
        return model, None
    return scored_model(model, fs), fs
