"""The gateway's endpoints, one module per resource; app.create_app includes each module's `router`."""
