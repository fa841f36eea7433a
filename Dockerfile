# Cordum control plane: slim, non-root, gunicorn. Build: docker build -t cordum .
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CORDUM_ENV=production CORDUM_STATE_DIR=/var/lib/cordum

RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system cordum && useradd --system --gid cordum --home /app cordum \
 && mkdir -p /var/lib/cordum && chown cordum:cordum /var/lib/cordum

WORKDIR /app
COPY requirements/ requirements/
RUN pip install -r requirements/base.txt
COPY . .
RUN pip install --no-deps . \
 && CORDUM_SECRET_KEY=build-only-collectstatic-key-not-used-at-runtime-0123456789 python manage.py collectstatic --noinput

USER cordum
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/login/')" || exit 1
CMD ["gunicorn", "cordum.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4", \
     "--timeout", "90", "--access-logfile", "-"]
