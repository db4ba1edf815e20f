"""ComfyUI servers as a supervised fleet, and durable jobs dispatched over it."""
