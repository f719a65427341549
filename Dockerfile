# The Flotilla worker image: `docker compose --profile workers up` runs the example
# topologies against the compose services; scale with `--scale metrics-worker=3`.
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
# Dependencies first (cached while only the sources change); `prepare` builds later.
RUN npm install --ignore-scripts --no-audit --no-fund
COPY . .
RUN npm run build
ENV FLOTILLA_LOG_FORMAT=json
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["--help"]
