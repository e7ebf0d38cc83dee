# syntax=docker/dockerfile:1
#
# One image for every Cannect process; docker-compose.yml (or the Procfile) picks the
# command. The default CMD runs the web process.
#
#   docker build -t cannect-backend .
#   docker run --env-file .env -p 3000:3000 cannect-backend

# ---- build: a virtualenv holding the dependencies, then the project itself ----------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# A compiler for the "fast" extra (gunicorn's HTTP parser in C), in this stage only.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*

# Dependencies first, read from pyproject.toml, so this layer is rebuilt only when the
# dependency list changes, not on every source edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['fast']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

# Then the project (the packages listed in [tool.setuptools.packages.find]).
COPY README.md ./
COPY cannect ./cannect
COPY app ./app
COPY tasks ./tasks
COPY services ./services
COPY models ./models
COPY migrations ./migrations
RUN pip install --no-deps .

# ---- runtime: the virtualenv only, run by an unprivileged user ----------------------
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=3000

RUN groupadd --system --gid 10001 cannect \
 && useradd --system --uid 10001 --gid cannect --home-dir /app --create-home --shell /usr/sbin/nologin cannect

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
USER cannect:cannect

EXPOSE 3000

CMD ["gunicorn", "--config", "python:cannect.gunicorn_conf", "app:create_app()"]
