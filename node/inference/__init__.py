"""The owner's private local inference: the half of the rig that serves the owner's users.

- `settings`: the checks of the [inference] section that span its keys, and each preset's
  command line and health endpoint;
- `supervisor`: one subprocess per configured server (an `InferenceServer`), pinned to local GPUs
  by UUID, health-checked, restarted with backoff, drained before it moves to other GPUs;
- `gateway`: one OpenAI-compatible HTTP endpoint in front of the servers, routed by model name,
  with per-user keys and rate limits; streams pass through chunk by chunk;
- `metering`: `Usage(user, model, prompt_tokens, completion_tokens, latency_ms)` from each answer,
  counted with the server's own tokenizer where a stream carries no usage;
- `users`: API keys (stored hashed) and the `sunrig users` command;
- `simulated`: a clearly labelled simulated server for the demo;
- `runtime`: the supervisor and gateway started and stopped together, and their state as data.

Prompts and completions pass through memory only: no text of them is ever stored or logged.
"""
