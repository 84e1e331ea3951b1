# The infarct mask simulator (cardiac-mi simulate) in a container, for batch and sharded runs.
# Build from the repository root:
#   docker build -f docker/simulator.Dockerfile -t cardiac-mi-simulator .
#   docker run --rm -v "$PWD/out:/out" cardiac-mi-simulator --mode synthetic --n 1000 --seed 0 --out /out
#   docker run --rm -v "$PWD/emidec:/emidec:ro" -v "$PWD/out:/out" cardiac-mi-simulator \
#       --mode hybrid --recipients /emidec --n 500 --seed 1 --out /out
#   docker run --rm -v "$PWD/out:/out" cardiac-mi-simulator --report /out
# Sharded, e.g. a Kubernetes Indexed Job of 8 completions writing to one shared volume (the
# exec-form entrypoint does not expand variables, so go through a shell):
#   command: ["sh", "-c", "cardiac-mi simulate --n 100000 --seed 0 --out /out --shard ${JOB_COMPLETION_INDEX}/8"]
# Each shard writes its own manifest.shard-<i>-of-8.csv; the union of the shards is the unsharded run.
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="cardiac-mi-simulator" \
      org.opencontainers.image.description="Infarct label mask simulator of cardiac_mi (cardiac-mi simulate)" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
WORKDIR /opt/cardiac_mi

# The pinned working set, installed as scripts/setup.sh does (build-constraints.txt as PIP_CONSTRAINT,
# SAM2_BUILD_CUDA=0), with PyTorch's CPU index so that torch==2.13.0 is the CPU build 2.13.0+cpu and not
# PyPI's CUDA build; the build fails if a CUDA torch got in anyway (see cardiac-mi.Dockerfile).
COPY requirements.txt build-constraints.txt ./
RUN PIP_CONSTRAINT=/opt/cardiac_mi/build-constraints.txt SAM2_BUILD_CUDA=0 \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    pip install -r requirements.txt setuptools==84.2.1 \
 && python -c "import sys, torch; sys.exit(f'CUDA torch {torch.__version__} installed' if torch.version.cuda else 0)"

COPY pyproject.toml README.md ./
COPY lgemri ./lgemri
COPY cardiac_mi ./cardiac_mi
COPY simulator ./simulator
COPY gan ./gan
RUN pip install --no-deps --no-build-isolation . \
 && pip check

RUN groupadd --gid 1000 cardiac \
 && useradd --create-home --uid 1000 --gid cardiac cardiac
USER 1000:1000
ENTRYPOINT ["cardiac-mi", "simulate"]
CMD ["--help"]
