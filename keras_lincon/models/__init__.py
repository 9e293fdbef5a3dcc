"""TensorFlow-only models and training: the constrained VAE, its TFP prior, multi-worker training.

On other backends these raise a clear error when used (the layer itself runs everywhere).
"""

from keras_lincon.models.constrained_vae import ConstrainedVAE
from keras_lincon.models.distribute import fit_distributed
from keras_lincon.models.latent_prior import SUPPORTED_BACKENDS, LatentPrior

__all__ = ["SUPPORTED_BACKENDS", "ConstrainedVAE", "LatentPrior", "fit_distributed"]
