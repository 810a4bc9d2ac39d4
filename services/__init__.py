"""The local services beside the agent: the page and its token endpoint (web.py), the
redispatcher webhook (redispatch.py) and the gateway that speaks the cloud STT protocols
(gateway/). They build on the product, agent/, and never on the developer tools."""
