from servekit.client.queue_client import QueueClient
