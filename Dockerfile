# One image for the three Ledger services; compose.yaml picks the process with `command:`
# (python -m command_server | projector | query_server). Configuration is LEDGER_* variables.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# The dependencies first, at the versions of constraints.txt, in a layer of their own: a change
# to the code then rebuilds only the small layer below.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > requirements.txt \
    && pip install -c constraints.txt -r requirements.txt

COPY README.md ./
COPY ledger ledger
COPY command_server command_server
COPY projector projector
COPY query_server query_server
# Installed, then the sources removed: the services run from site-packages exactly what the
# package ships (migrations, Avro schemas, the proto descriptors for reflection).
RUN pip install --no-deps . && rm -rf /src

# The services write nothing to the image, so they need no root. /credentials is where compose
# mounts the local credentials' volume: a fresh volume takes this directory's owner, so that the
# one-shot `credentials` service may write there.
RUN useradd --system --uid 10001 --no-create-home ledger \
    && mkdir /credentials && chown ledger /credentials
USER ledger
WORKDIR /

# gRPC: command server, query server; HTTP: the projector's status and /metrics, and the
# servers' /metrics.
EXPOSE 50051 50052 9464 9101 9102
