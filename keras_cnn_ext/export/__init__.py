"""Export: portable, verified artifacts in the three formats Keras writes on TensorFlow.

- `export_savedmodel(model, path, portable=True)` (`savedmodel.py`): a TensorFlow SavedModel,
  op-checked (stock ops only, unless `portable=False`) and reloaded in a fresh process;
- `export_model(model, path, format="savedmodel"|"onnx"|"litert")` (`formats.py`): the same for
  ONNX (onnxruntime) and LiteRT (the TFLite interpreter), through Keras's `model.export`;
- `check.py`: the TensorFlow-only checks, also run as the fresh process's script.

Keras's own `model.export(...)` is portable too: "auto" never puts the compiled ops into a
graph that leaves the process, and an explicit `implementation="native"` layer makes such an
export fail loudly (docs/export.md, `kce.ops.dispatch`).
"""

from keras_cnn_ext.export import check, formats, savedmodel
from keras_cnn_ext.export.formats import FORMATS, export_model
from keras_cnn_ext.export.savedmodel import (
    ENDPOINT,
    REPORT_PATH,
    VERIFY_TIMEOUT_S,
    ExportVerificationError,
    export_savedmodel,
)
from keras_cnn_ext.ops.dispatch import NonPortableExportError

__all__ = ["ENDPOINT", "FORMATS", "REPORT_PATH", "VERIFY_TIMEOUT_S", "ExportVerificationError",
           "NonPortableExportError", "check", "export_model", "export_savedmodel", "formats",
           "savedmodel"]
