"""Export for deployment (TensorFlow only): SavedModel for TF Serving and TFLite."""

from keras_lincon.export.serving import export_for_serving, rest_predict_example
from keras_lincon.export.tflite import export_tflite, run_tflite

__all__ = ["export_for_serving", "export_tflite", "rest_predict_example", "run_tflite"]
