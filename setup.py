from setuptools import find_packages, setup

TRAIN = ["torch>=2.4", "safetensors>=0.4", "scikit-image>=0.22", "pyyaml>=6", "tqdm>=4.60"]
EXPORT = ["onnx>=1.16", "onnxsim>=0.4.36", "onnxruntime>=1.18", "polygraphy>=0.49"]
# `inpdiff fp16`: ModelOpt's AutoCast and what it imports. Not nvidia-modelopt[onnx], which pins onnx
# and installs onnxruntime-gpu over onnxruntime.
MODELOPT = ["nvidia-modelopt>=0.40", "onnx-graphsurgeon>=0.5", "onnxslim>=0.1.70", "onnxscript>=0.3", "lief>=0.15",
            "ml_dtypes>=0.5"]
TRT = ["tensorrt>=10.3", "cuda-python>=12.6"]  # cuda-python: pick the major of your CUDA driver
RAY = ["ray[data]>=2.9"]  # trt-localize --ray and the Ray Data callable class
TEST = ["pytest>=8", "scikit-learn>=1.4", "pillow>=10"]
# Third-party inpainting tools that `inpdiff synth` runs as fill methods (training/test data only).
# exemplar-based-inpainting (Criminisi) is installed apart with --no-deps: its metadata pulls the GUI
# opencv-python (which clobbers the headless one) and its docs toolchain; it needs only OpenCV 4.x
# (5.x changed findNonZero's shape) and rich. G'MIC is a Debian package (apt-get install gmic).
FILLS = ["pypatchmatch>=2.2", "resynthesizer>=1.2", "pillow>=10", "rich>=13", "opencv-python-headless>=4.8,<5"]

setup(
    name="inpdiff",
    version="0.1.0",
    description="Find the inpainted regions of a photograph (InpDiffusion), fast on NVIDIA GPUs",
    # The shipped model (models/ in the source tree) installs inside the package as inpdiff/models/.
    packages=find_packages(include=["inpdiff", "inpdiff.*"]) + ["inpdiff.models"],
    package_dir={"inpdiff.models": "models"},
    # What trt-localize reads, and no more: the graphs and manifests. Checkpoints and the inpainters
    # are for training and the torch backend, which work from a source checkout.
    package_data={"inpdiff": ["configs/*.yaml", "runtime/gallery.html"],
                  "inpdiff.models": ["*/*.onnx", "*/manifest.json", "*/score_report.json"]},
    python_requires=">=3.10",
    # The lean runtime only: no torch here.
    # pyvips[binary]: libvips, prebuilt for x86_64 and aarch64, which decodes and encodes photos too large
    # to hold a band of rows at a time (inpdiff.spill); without it they are held whole.
    install_requires=["numpy>=1.24", "opencv-python-headless>=4.8", "onnxruntime>=1.18", "pyvips[binary]>=2.2"],
    extras_require={
        "train": TRAIN,
        "export": EXPORT,
        "modelopt": MODELOPT,
        "trt": TRT,
        "ray": RAY,
        "test": TEST,
        "fills": FILLS,
        # Everything that installs on a CPU-only machine (TensorRT's builder does not).
        "dev": TRAIN + EXPORT + MODELOPT + RAY + TEST + FILLS,
    },
    entry_points={"console_scripts": ["inpdiff=inpdiff.cli:main", "trt-localize=inpdiff.runtime.launch:main"],
                  "inpdiff.backends": ["torch = inpdiff.model.torch_backend:make"]},
)
