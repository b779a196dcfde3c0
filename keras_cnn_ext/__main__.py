"""`python -m keras_cnn_ext ...` is the `keras-cnn-ext` command."""

import sys

from keras_cnn_ext.cli import main

sys.exit(main())
