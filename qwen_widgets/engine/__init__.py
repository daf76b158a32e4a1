"""Talking to the API: settings, the clock, the request budget, one call with retries, the poll
schedule, image fetching and uploads, the clients (async, and the sync facade on the private
loop), sweeps and the default client. Imports `model`, `store` and the `simulator` (demo mode)."""
