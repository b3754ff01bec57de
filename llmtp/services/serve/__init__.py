"""Serving: plan a launch, run llama-server under the supervisor, look at running servers, talk to them."""
