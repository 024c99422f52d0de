"""``azr serve``: the verifier as an HTTP reward service, trio-native.

Endpoints: ``POST /v1/verify`` (typed items in, :class:`~azr.verify.Verdict` list out; see
:mod:`azr.serve.schema`), ``POST /get_reward`` (OpenRLHF's ``--remote_rm_url`` protocol; see
:mod:`azr.adapters.openrlhf`), ``GET /health``, ``GET /metrics`` (Prometheus). Bodies are JSON
or msgpack, chosen by ``Content-Type`` and ``Accept``.

In a trio program::

    from azr.serve import ServeConfig, open_reward_server

    async with open_reward_server(ServeConfig(port=0)) as server:
        print(server.url)          # http://127.0.0.1:<port>
        ...                        # leaving the block drains and stops

As a process: ``python -m azr.serve --host 0.0.0.0 --port 8000`` (:func:`main`); SIGTERM or
SIGINT drains in-flight requests (up to ``--grace`` seconds) and closes the executor.
"""

from azr.serve._server import RewardServer as RewardServer
from azr.serve._server import open_reward_server as open_reward_server
from azr.serve._server import serve as serve
from azr.serve._server import serve_async as serve_async
from azr.serve.cli import main as main
from azr.serve.config import ServeConfig as ServeConfig

__all__ = ["RewardServer", "ServeConfig", "main", "open_reward_server", "serve", "serve_async"]
