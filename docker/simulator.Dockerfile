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

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 SAM2_BUILD_CUDA=0 \
    PIP_CONSTRAINT=/opt/cardiac_mi/build-constraints.txt \
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
WORKDIR /opt/cardiac_mi
COPY requirements.txt build-constraints.txt ./
RUN pip install -r requirements.txt
COPY pyproject.toml README.md ./
COPY lgemri ./lgemri
COPY cardiac_mi ./cardiac_mi
COPY simulator ./simulator
COPY gan ./gan
RUN pip install --no-deps --no-build-isolation .
RUN useradd --create-home --uid 1000 cardiac
USER cardiac
ENTRYPOINT ["cardiac-mi", "simulate"]
CMD ["--help"]
