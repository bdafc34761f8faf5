"""The controller manager: one client, one informer factory, every
controller, the scheduler and (optionally) simulated nodes, in one event loop.
The controllers write as kube-controller-manager and the scheduler as
kube-scheduler (their User-Agents), as field managers and audit name them
upstream."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..client.events import EventRecorder
from ..client.informer import InformerFactory
from ..client.rest import Client
from ..node.simulated import SimulatedNodes
from ..proxy.loadbalancer import LoadBalancerController
from ..scheduler.scheduler import Scheduler
from ..version import user_agent
from .cronjob import CronJobController
from .daemonset import DaemonSetController
from .deployment import DeploymentController
from .endpoints import EndpointsController
from .endpointslice import EndpointSliceController
from .garbagecollector import GarbageCollector
from .job import JobController
from .namespace import NamespaceController
from .nodelifecycle import NodeLifecycleController
from .replicaset import ReplicaSetController
from .resourcequota import ResourceQuotaController
from .rootcacertpublisher import RootCACertPublisher
from .serviceaccount import ServiceAccountsController
from .ttlafterfinished import TTLAfterFinishedController

log = logging.getLogger("kubeling.controllers")


@dataclass
class ManagerOptions:
    workers: int = 5
    node_monitor_grace_period: float = 40.0
    simulated_nodes: int = 0
    simulated_ready_delay: float = 0.5
    #: the cluster CA (PEM) the root CA publisher puts in every namespace; empty: not published
    root_ca: str = ""


class ControllerManager:
    def __init__(self, client: Client, options: ManagerOptions) -> None:
        self.client = client
        self.options = options
        self.factory = InformerFactory(client)
        host = socket.gethostname()

        def recorders(on: Client) -> Callable[[str], EventRecorder]:
            return lambda component: EventRecorder(on, component, host)

        f = self.factory
        kcm = client.with_user_agent(user_agent("kube-controller-manager"))
        recorder = recorders(kcm)
        self.controllers: list[Any] = [
            ReplicaSetController(kcm, f, recorder),
            DeploymentController(kcm, f, recorder),
            DaemonSetController(kcm, f, recorder),
            JobController(kcm, f, recorder),
            CronJobController(kcm, f, recorder),
            TTLAfterFinishedController(kcm, f, recorder),
            EndpointsController(kcm, f, recorder),
            EndpointSliceController(kcm, f, recorder),
            GarbageCollector(kcm, f, recorder),
            NamespaceController(kcm, f, recorder),
            ServiceAccountsController(kcm, f, recorder),
            ResourceQuotaController(kcm, f, recorder),
            NodeLifecycleController(kcm, f, recorder,
                                    node_monitor_grace_period=options.node_monitor_grace_period),
            LoadBalancerController(kcm, f, recorder),
        ]
        if options.root_ca:
            self.controllers.append(RootCACertPublisher(kcm, f, recorder, root_ca=options.root_ca))
        scheduler = client.with_user_agent(user_agent("kube-scheduler"))
        self.scheduler = Scheduler(scheduler, f, recorders(scheduler), bind_parallelism=64)
        self.nodes = (SimulatedNodes(client.with_user_agent(user_agent("kubelet")), f, options.simulated_nodes,
                                     ready_delay=options.simulated_ready_delay)
                      if options.simulated_nodes else None)

    async def start(self) -> list[asyncio.Task[None]]:
        """Start informers and every loop; returns the tasks (cancel them to stop)."""
        await self.factory.start()
        tasks = [asyncio.create_task(c.run(self.options.workers), name=type(c).__name__) for c in self.controllers]
        tasks.append(asyncio.create_task(self.scheduler.run(), name="Scheduler"))
        if self.nodes is not None:
            await self.factory.wait_synced()
            await self.nodes.start()
        return tasks

    async def stop(self, tasks: list[asyncio.Task[None]]) -> None:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.nodes is not None:
            await self.nodes.stop()
        await self.factory.stop()


async def run_manager(kubeconfig: Path, options: ManagerOptions, started: asyncio.Event | None = None) -> None:
    client = await Client.from_kubeconfig(kubeconfig, user_agent=user_agent("kube-controller-manager"))
    manager = ControllerManager(client, options)
    tasks = await manager.start()
    if started is not None:
        started.set()
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if t.exception() is not None:
                log.error("%s stopped: %r", t.get_name(), t.exception())
                raise t.exception()  # type: ignore[misc]
    finally:
        await manager.stop(tasks)
        await client.close()
