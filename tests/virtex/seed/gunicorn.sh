gunicorn server:app \
  --workers 10 \
  --worker-class servekit.VirtexWorker \
  --bind localhost:8081 \
  --max-requests 10000 \
  --worker-connections 10000 \
  --log-level critical
