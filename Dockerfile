# The production image: one image, four processes (web, gateway, worker, beat), chosen by the
# compose service's command.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 \
      libharfbuzz-subset0 fonts-dejavu-core gettext \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY sparklin sparklin
COPY accounts accounts
COPY communities communities
COPY chargers chargers
COPY ocpp_gateway ocpp_gateway
COPY billing billing
RUN pip install '.[prod]'
COPY . .
RUN SECRET_KEY=build python manage.py collectstatic --noinput

RUN useradd --system --home /app sparklin && chown -R sparklin /app
USER sparklin
EXPOSE 8000 9000
CMD ["gunicorn", "sparklin.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"]
