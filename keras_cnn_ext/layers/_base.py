"""Pieces shared by the convolution and pooling layers."""

from keras_cnn_ext.ops import dispatch, geometry


def output_shape(input_shape, window, strides, pads, channels, data_format, layer_name):
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
            geometry.spatial_dims(input_shape, data_format), window, strides, pads)
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
