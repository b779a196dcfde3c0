"""Pieces shared by the convolution and pooling layers."""

import keras

from keras_cnn_ext.ops import dispatch, geometry, portable


# Whether Keras runs on TensorFlow (the composite / native ops); else the layers call the
# backend-independent `keras_cnn_ext.ops.portable` (docs/backends.md).
on_tensorflow = portable.on_tensorflow


def check_portable(layer, implementation):
    """Off TensorFlow only `implementation="auto"` exists (the portable tier): 'native',
    'composite' and 'reference' run TensorFlow ops, and are a clear error here."""
    portable.check_implementation(implementation, f" of layer '{layer.name}'")


class ExportGuard:
    """A mixin (listed before `keras.layers.Layer`) for the layers with an `implementation`:
    an export of a layer whose ops need this process fails loudly, before anything is written,
    instead of producing an artifact that cannot load elsewhere (docs/export.md).

    `_trackable_children(save_type="savedmodel")` is the hook TensorFlow and Keras's TF layer
    use to prepare an object for a SavedModel: Keras's `ExportArchive` (behind every
    `model.export` format) walks the tracked model with it after tracing the endpoint and
    before writing, and `tf.saved_model.save` walks its objects with it. Checkpoints
    (`save_type="checkpoint"`) and `.keras` files do not pass here.
    """

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        if save_type == "savedmodel":
            dispatch.check_exportable(self, self.implementation)
        return super()._trackable_children(save_type, **kwargs)


def output_shape(input_shape, window, strides, pads, channels, data_format, layer_name,
                 ceil_mode=False):
    """The layer's output shape; a window that does not fit names the layer."""
    input_shape = tuple(input_shape)
    if len(input_shape) != 4:
        raise ValueError(
            f"Invalid input shape for layer '{layer_name}'. Expected a 4-D input (batch, "
            f"height, width, channels) or (batch, channels, height, width). Received: "
            f"input_shape={input_shape}"
        )
    try:
        spatial = geometry.spatial_output_shape(
            geometry.spatial_dims(input_shape, data_format), window, strides, pads, ceil_mode)
    except ValueError as error:
        raise ValueError(f"Layer '{layer_name}': {error}") from None
    return geometry.with_spatial(input_shape, spatial, channels, data_format)


def check_not_in_xla(layer, implementation):
    """A native or reference op inside an XLA cluster would fail deep inside TF; say so here."""
    implementation = dispatch.effective(implementation)
    if implementation in ("native", "reference") and dispatch.in_xla_context():
        raise ValueError(
            f"Layer '{layer.name}' uses implementation='{implementation}', which XLA cannot "
            "compile (jit_compile=True). Use implementation='composite' or 'auto', or compile "
            "the model with jit_compile=False."
        )
