"""Client and server as separate programs.

The client generates keys for a plan and keeps the secret key; the server holds the plan and the
evaluation keys only, runs the compiled program on ciphertexts and returns ciphertexts.

* :mod:`olafhe.serve.artefacts`: key-directory manifests and ciphertext envelopes, each bound to a plan
  (its sha256), a backend, the CKKS parameters and a key set; mismatches are refused before any work.
* :mod:`olafhe.serve.sides`: the two sides built from a config and a plan (key generation, encryption and
  decryption on the client; loading evaluation keys and running the program on the server).
* :mod:`olafhe.serve.keystore`: the server's registered key sets, uploaded in chunks straight to disk.
* :mod:`olafhe.serve.worker`: one computation at a time, a bounded queue.
* :mod:`olafhe.serve.app`: the HTTP server (FastAPI on uvicorn); :mod:`olafhe.serve.body` reads request
  bodies in chunks, :mod:`olafhe.serve.errors` maps errors to HTTP status codes.
* :mod:`olafhe.serve.remote`: its HTTP client.
* :mod:`olafhe.serve.audit`: the check that the server process holds no secret key.
"""
