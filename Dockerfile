# cnn-interp server image: CPU by default (TORCH_INDEX selects the wheel index, e.g. .../whl/cu128).
# The build fetches the ImageNet weights for vgg16/alexnet into the image through the same
# resolution code the server uses (download into the torch hub cache, checksum-verified), so a
# deployed server is pretrained out of the box; LeNet's trained weights ship in the repo.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# A mirror of the weights files (URL/<torchvision file name>) for builds that cannot reach the published one.
ARG WEIGHTS_URL_BASE=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    INTERP_HUB_DIR=/opt/interp/weights \
    INTERP_HOST=0.0.0.0 \
    INTERP_PORT=50051

RUN useradd --create-home --uid 10001 interp
# Fashion-MNIST (70,000 images, /usr/share/datasets/fashion-mnist): the LeNets' dataset views,
# class attribute sets and robustness curves read it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends dataset-fashion-mnist \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app

# torch/torchvision from the CPU index; the rest at the exact pins of requirements.lock
# (minus the CUDA runtime packages that only the CUDA build of torch needs).
COPY requirements.lock ./
RUN pip install --index-url "$TORCH_INDEX" torch==2.14.1 torchvision==0.29.1 \
 && grep -vE '^(#|torch==|torchvision==|triton==|nvidia-|cuda-)' requirements.lock \
    | grep -vE '^(pytest|hypothesis|ruff|mypy|ast_serialize|librt|pathspec|types-protobuf|grpcio-tools|torchattacks|scikit-image|ImageIO|tifffile|lazy-loader|networkx|selenium|trio|outcome|wsproto|websocket-client|PySocks)' \
    > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

COPY pyproject.toml README.md ./
COPY protos ./protos
COPY models ./models
COPY interp ./interp
COPY server ./server
COPY client ./client
COPY web ./web
RUN pip install --no-deps --no-build-isolation ".[server,web]" \
 && python -m models.fetch vgg16 alexnet --hub-dir "$INTERP_HUB_DIR" --weights-url-base "$WEIGHTS_URL_BASE" \
 && mkdir -p /opt/interp/data/index \
 && chown -R interp /opt/interp

USER interp
EXPOSE 50051 9100 8080
HEALTHCHECK --interval=15s --timeout=6s --start-period=60s --retries=3 CMD ["python", "-m", "server.healthcheck"]
CMD ["interp-server"]
