#!/usr/bin/env python3
"""Prints the path of libonnxruntime from the `onnxruntime` wheel (for ORT_DYLIB_PATH)."""
import glob
import os
import sys

import onnxruntime

found = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))
if not found:
    sys.exit("no libonnxruntime.so* in the onnxruntime package")
print(found[0])
