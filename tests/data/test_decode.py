"""tlkit.data.decode: the probe, both decoders inside tf.data, the eager reader, resizing."""

import re
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tlkit.data import decode
from tlkit.core.errors import TlkitError

SIZE = (30, 20)                    # PIL (width, height) of every written image
COLOR, GRAY = (200, 50, 100), 120
LUMA = 101                         # round(0.2989 * 200 + 0.5870 * 50 + 0.1140 * 100)
BLUE = (0, 0, 255)


def _rgb(mode="RGB"):
    return Image.new("RGB", SIZE, COLOR).convert(mode)


def _palette(transparent=False):
    img = Image.new("P", SIZE, 0)
    img.putpalette([*COLOR, *BLUE])
    if transparent:
        img.info["transparency"] = 0
    return img


def _frames():
    return [Image.new("RGB", SIZE, c) for c in (COLOR, BLUE)]


def _write_png16(path, rgb):
    """A 16-bit RGB PNG (Pillow writes none): each channel value v stored as v * 257."""
    w, h = SIZE
    row = b"\x00" + np.tile(np.array(rgb, ">u2") * 257, w).astype(">u2").tobytes()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(row * h)) + chunk(b"IEND", b""))


def _write_rle8_bmp(path, rgb):
    """An 8-bit RLE BMP (Pillow writes none): a run of palette index 1 per row."""
    w, h = SIZE
    palette = bytes((0, 0, 0, 0, rgb[2], rgb[1], rgb[0], 0))
    pixels = (bytes((w, 1, 0, 0)) * h)[:-2] + b"\x00\x01"
    offset = 14 + 40 + len(palette)
    with open(path, "wb") as f:
        f.write(b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
                + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 8, 1, len(pixels), 2835, 2835, 2, 0)
                + palette + pixels)


# name: (writer, expected pixel: an RGB triple or a gray level, probe's decoder)
FILES = {
    "rgb.jpg": (lambda p: _rgb().save(p, quality=95), COLOR, "tf"),
    "gray.jpg": (lambda p: Image.new("L", SIZE, GRAY).save(p, quality=95), GRAY, "tf"),
    "cmyk.jpg": (lambda p: _rgb("CMYK").save(p, quality=95), COLOR, "tf"),
    "rgb.png": (lambda p: _rgb().save(p), COLOR, "tf"),
    "rgba.png": (lambda p: Image.new("RGBA", SIZE, (*COLOR, 128)).save(p), COLOR, "tf"),
    "la.png": (lambda p: Image.new("LA", SIZE, (GRAY, 128)).save(p), GRAY, "tf"),
    "palette.png": (lambda p: _palette().save(p), COLOR, "tf"),
    "palette_alpha.png": (lambda p: _palette(True).save(p), COLOR, "tf"),
    "gray16.png": (lambda p: Image.fromarray(np.full(SIZE[::-1], 40000, np.uint16)).save(p),
                   40000 >> 8, "tf"),
    "rgb16.png": (lambda p: _write_png16(p, COLOR), COLOR, "tf"),
    "rgb.bmp": (lambda p: _rgb().save(p), COLOR, "tf"),
    "rgba32.bmp": (lambda p: Image.new("RGBA", SIZE, (*COLOR, 128)).save(p), COLOR, "tf"),
    "palette.bmp": (lambda p: _palette().save(p), COLOR, "pil"),
    "gray8.bmp": (lambda p: Image.new("L", SIZE, GRAY).save(p), GRAY, "tf"),
    "bilevel.bmp": (lambda p: Image.new("1", SIZE, 1).save(p), 255, "pil"),
    "rle8.bmp": (lambda p: _write_rle8_bmp(p, COLOR), COLOR, "pil"),
    "rgb.gif": (lambda p: _palette().save(p), COLOR, "tf"),
    "animated.gif": (lambda p: _frames()[0].save(p, save_all=True, append_images=_frames()[1:]),
                     COLOR, "tf"),
    "transparent.gif": (lambda p: _palette().save(p, transparency=0), COLOR, "pil"),
    "rgb.webp": (lambda p: _rgb().save(p, lossless=True), COLOR, "tf"),
    "rgba.webp": (lambda p: Image.new("RGBA", SIZE, (*COLOR, 128)).save(p, lossless=True),
                  COLOR, "pil"),
    "animated.webp": (lambda p: _frames()[0].save(p, save_all=True, lossless=True,
                                                  append_images=_frames()[1:]), COLOR, "pil"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    for name, (write, _, _) in FILES.items():
        write(str(root / name))
    return {name: str(root / name) for name in FILES}


def _expected(value, channels):
    if np.ndim(value) == 0:
        return (value,) * channels
    return (LUMA,) if channels == 1 else value


def _check_solid(image, value, channels, name):
    assert image.dtype == np.uint8 and image.shape[-1] == channels, name
    np.testing.assert_allclose(image.reshape(-1, channels).astype(int),
                               np.broadcast_to(_expected(value, channels), (image[..., 0].size,
                                                                            channels)),
                               atol=4, err_msg=name)


def test_probe_says_the_decoder_and_size(files):
    for name, (_, value, decoder) in FILES.items():
        found = decode.probe(files[name])
        assert found == decode.Probe(decoder, None, 20, 30, 1 if np.ndim(value) == 0 else 3), name


def test_read_image_decodes_every_format(files):
    for name, (_, value, _) in FILES.items():
        native = 1 if np.ndim(value) == 0 else 3
        image = decode.read_image(files[name])
        assert image.shape == (20, 30, native), name
        _check_solid(image, value, native, name)
        for channels in (1, 3):
            small = decode.read_image(files[name], image_size=(8, 12), channels=channels)
            assert small.shape == (8, 12, channels), name
            _check_solid(small, value, channels, name)


@pytest.mark.parametrize("channels", [1, 3])
def test_decode_and_resize_in_tf_data_both_paths(files, channels):
    """Every file through the PIL path, and the tf ones through tf.io too: same pixels."""
    rows = [(n, True) for n in FILES] + [(n, False) for n, f in FILES.items() if f[2] == "tf"]
    ds = tf.data.Dataset.from_tensor_slices(([files[n] for n, _ in rows], [u for _, u in rows]))
    ds = ds.map(lambda p, pil: decode.decode_and_resize(p, pil, image_size=(8, 12),
                                                        channels=channels))
    assert ds.element_spec.shape == (8, 12, channels) and ds.element_spec.dtype == tf.uint8
    for (name, use_pil), image in zip(rows, ds.as_numpy_iterator()):
        _check_solid(image, FILES[name][1], channels, f"{name} use_pil={use_pil}")


def _marked(path, orientation):
    """20x30 stored, blue with a red 4x4 block at the stored top-left, EXIF orientation tag."""
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[...] = BLUE
    pixels[:4, :4] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())
    return str(path)


def test_exif_rotated_jpeg_comes_back_rotated(tmp_path):
    path = _marked(tmp_path / "phone.jpg", 6)  # 6: rotate 90 degrees clockwise to display
    assert decode.probe(path) == decode.Probe("pil", None, 30, 20, 3)
    ds = tf.data.Dataset.from_tensors((path, True)).map(
        lambda p, pil: decode.decode_and_resize(p, pil, image_size=(30, 20), channels=3))
    for image in (decode.read_image(path), next(ds.as_numpy_iterator())):
        assert image.shape == (30, 20, 3)
        assert image[1, -2, 0] > 200 and image[1, -2, 2] < 50    # the mark: now top-right
        assert image[1, 1, 0] < 50 and image[-2, -2, 2] > 200     # blue elsewhere


def test_probe_reports_unreadable_files(tmp_path):
    (tmp_path / "text.jpg").write_text("not a picture")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    for name in ("text.jpg", "empty.png"):
        found = decode.probe(tmp_path / name)
        assert found.decoder is None and found.problem == "not a readable image"
    found = decode.probe(tmp_path / "notes.txt")
    assert found.decoder is None and found.problem.startswith("not an image file (extensions:")
    with pytest.raises(TlkitError, match="Cannot read image .*text.jpg: not a readable image[.]$"):
        decode.read_image(tmp_path / "text.jpg")


def test_a_file_broken_after_the_probe_is_skipped(tmp_path, files):
    good, pil_good = files["rgb.jpg"], files["palette.bmp"]
    broken, pil_broken = str(tmp_path / "broken.jpg"), str(tmp_path / "broken.bmp")
    _rgb().save(broken)
    _palette().save(pil_broken)
    paths = [good, broken, pil_good, pil_broken]
    flags = [decode.probe(p).decoder == "pil" for p in paths]
    assert flags == [False, False, True, True]
    for path in (broken, pil_broken):
        with open(path, "wb") as f:
            f.write(b"\xff\xd8\xff garbage" + bytes(range(256)))
    ds = tf.data.Dataset.from_tensor_slices((paths, flags)).map(
        lambda p, pil: decode.decode_and_resize(p, pil, image_size=(8, 8), channels=3))
    assert len(list(ds.ignore_errors())) == 2
    elements = iter(ds)  # without ignore_errors: the broken elements raise, the others come
    for error in (None, "Invalid JPEG data", None, f"decode image {re.escape(pil_broken)}"):
        if error:
            with pytest.raises(tf.errors.InvalidArgumentError, match=error):
                next(elements)
        else:
            assert next(elements).shape == (8, 8, 3)
    for path in (broken, pil_broken):
        with pytest.raises(TlkitError, match=f"^Cannot read image {re.escape(path)}: "):
            decode.read_image(path)


def test_truncated_png_fails_to_decode_but_probes(tmp_path, files):
    path = tmp_path / "cut.png"
    data = open(files["rgb16.png"], "rb").read()
    path.write_bytes(data[:len(data) // 2])
    assert decode.probe(path).decoder == "tf"
    with pytest.raises(TlkitError, match="Cannot read image .*cut.png"):
        decode.read_image(path)


def test_resize_modes_geometry():
    wide = np.zeros((10, 40, 1), np.uint8)
    wide[:, 10:30] = 255                          # black quarters left and right
    pad = decode.resize_image(wide, (20, 20), "pad").numpy()[..., 0]
    assert (pad[:7] == 0).all() and (pad[-8:] == 0).all()   # zero bars above and below
    assert pad[7:12, 8:12].min() == 255
    crop = decode.resize_image(wide, (20, 20), "crop").numpy()
    assert crop.min() == 255                      # the centre 10x10 is all white
    squash = decode.resize_image(wide, (20, 20), "squash").numpy()
    assert squash[:, 0].max() == 0 and squash[:, 10].min() == 255
    tall = decode.resize_image(np.full((40, 10, 3), 9, np.uint8), (10, 10), "crop")
    assert tall.shape == (10, 10, 3) and tall.numpy().min() == 9
    batch = decode.resize_image(np.zeros((2, 10, 40, 3), np.float32), (8, 8), "pad")
    assert batch.shape == (2, 8, 8, 3) and batch.dtype == tf.uint8
    clipped = decode.resize_image(np.array([[[300.0], [-5.0]]]), (1, 2)).numpy()
    assert clipped.ravel().tolist() == [255, 0]
    assert decode.RESIZE_MODES == ("squash", "crop", "pad") and decode.DEFAULT_RESIZE == "squash"


def test_invalid_arguments_name_what_is_valid(files):
    with pytest.raises(TlkitError, match="Invalid resize='stretch'. Expected one of: 'squash'"):
        decode.check_resize("stretch")
    with pytest.raises(TlkitError, match="channels must be 1 or 3"):
        decode.read_image(files["rgb.png"], channels=4)
    with pytest.raises(TlkitError, match="image_size must be"):
        decode.read_image(files["rgb.png"], image_size=(0, 5))
