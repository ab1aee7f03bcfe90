"""Kubernetes v1 objects as frozen pydantic models, with Kubernetes' JSON names and defaults."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictBool, StrictInt, StrictStr, model_validator

from gitkube.api.quantity import parse_quantity

# Kubernetes decodes strictly: "3" is not an int and "true" is not a bool. Strings stay lax only in
# that pydantic v2 already refuses numbers for str fields.
Int = StrictInt
Bool = StrictBool
Str = StrictStr


def _int_or_string(v: Any) -> int | str:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise ValueError("must be an integer or a string")
    return v


def _quantity(v: Any) -> str:
    # YAML gives `cpu: 0.5` or `memory: 1e3` as numbers; Kubernetes accepts them and so do we,
    # keeping the value as the string the user meant.
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError("a quantity must be a string or a number")
    text = v if isinstance(v, str) else (repr(v) if isinstance(v, float) else str(v))
    parse_quantity(text)
    return text


IntOrString = Annotated[Union[int, str], PlainValidator(_int_or_string)]
Quantity = Annotated[str, PlainValidator(_quantity)]
Protocol = Literal["TCP", "UDP", "SCTP"]


class K8sModel(BaseModel):
    """Base of every model: unknown fields refused, instances immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------- metadata

class OwnerReference(K8sModel):
    apiVersion: Str
    kind: Str
    name: Str
    uid: Str
    controller: Bool | None = None
    blockOwnerDeletion: Bool | None = None


class ObjectMeta(K8sModel):
    name: Str | None = None
    generateName: Str | None = None
    namespace: Str | None = None
    labels: dict[Str, Str] | None = None
    annotations: dict[Str, Str] | None = None
    uid: Str | None = None
    generation: Int | None = None
    resourceVersion: Str | None = None
    creationTimestamp: Str | None = None
    deletionTimestamp: Str | None = None
    ownerReferences: tuple[OwnerReference, ...] | None = None


class ObjectReference(K8sModel):
    apiVersion: Str | None = None
    kind: Str | None = None
    namespace: Str | None = None
    name: Str | None = None
    uid: Str | None = None
    resourceVersion: Str | None = None
    fieldPath: Str | None = None


# ---------------------------------------------------------------- pod spec

class ObjectFieldSelector(K8sModel):
    fieldPath: Str
    apiVersion: Str = "v1"


class ConfigMapKeySelector(K8sModel):
    name: Str | None = None
    key: Str
    optional: Bool | None = None


class SecretKeySelector(K8sModel):
    name: Str | None = None
    key: Str
    optional: Bool | None = None


class EnvVarSource(K8sModel):
    fieldRef: ObjectFieldSelector | None = None
    configMapKeyRef: ConfigMapKeySelector | None = None
    secretKeyRef: SecretKeySelector | None = None


class ConfigMapEnvSource(K8sModel):
    name: Str | None = None
    optional: Bool | None = None


class SecretEnvSource(K8sModel):
    name: Str | None = None
    optional: Bool | None = None


class EnvFromSource(K8sModel):
    prefix: Str | None = None
    configMapRef: ConfigMapEnvSource | None = None
    secretRef: SecretEnvSource | None = None


class EnvVar(K8sModel):
    name: Str
    value: Str | None = None
    valueFrom: EnvVarSource | None = None


class ContainerPort(K8sModel):
    containerPort: Int
    hostPort: Int | None = None
    hostIP: Str | None = None
    protocol: Protocol = "TCP"
    name: Str | None = None


class VolumeMount(K8sModel):
    name: Str
    mountPath: Str
    readOnly: Bool | None = None
    subPath: Str | None = None


class ResourceRequirements(K8sModel):
    requests: dict[Str, Quantity] | None = None
    limits: dict[Str, Quantity] | None = None


class ExecAction(K8sModel):
    command: tuple[Str, ...] | None = None


class HTTPHeader(K8sModel):
    name: Str
    value: Str


class HTTPGetAction(K8sModel):
    path: Str = "/"
    port: IntOrString
    host: Str | None = None
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    httpHeaders: tuple[HTTPHeader, ...] | None = None


class TCPSocketAction(K8sModel):
    port: IntOrString
    host: Str | None = None


class LifecycleHandler(K8sModel):
    exec: ExecAction | None = None
    httpGet: HTTPGetAction | None = None
    tcpSocket: TCPSocketAction | None = None


class Lifecycle(K8sModel):
    postStart: LifecycleHandler | None = None
    preStop: LifecycleHandler | None = None


class Probe(K8sModel):
    exec: ExecAction | None = None
    httpGet: HTTPGetAction | None = None
    tcpSocket: TCPSocketAction | None = None
    initialDelaySeconds: Int = 0
    periodSeconds: Int = 10
    timeoutSeconds: Int = 1
    successThreshold: Int = 1
    failureThreshold: Int = 3


def default_pull_policy(image: str) -> str:
    """Decides the imagePullPolicy Kubernetes gives an image: Always for `:latest` or no tag, else IfNotPresent."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


class Container(K8sModel):
    name: Str
    image: Str
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"]
    command: tuple[Str, ...] | None = None
    args: tuple[Str, ...] | None = None
    workingDir: Str | None = None
    env: tuple[EnvVar, ...] | None = None
    envFrom: tuple[EnvFromSource, ...] | None = None
    ports: tuple[ContainerPort, ...] | None = None
    volumeMounts: tuple[VolumeMount, ...] | None = None
    resources: ResourceRequirements | None = None
    livenessProbe: Probe | None = None
    readinessProbe: Probe | None = None
    lifecycle: Lifecycle | None = None
    stdin: Bool | None = None
    tty: Bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_pull_policy(cls, data: Any) -> Any:
        # The default depends on another field, so it is filled before field validation.
        if isinstance(data, dict) and data.get("imagePullPolicy") is None and isinstance(data.get("image"), str):
            data = {**data, "imagePullPolicy": default_pull_policy(data["image"])}
        return data


class EmptyDirVolumeSource(K8sModel):
    medium: Literal["", "Memory"] | None = None
    sizeLimit: Quantity | None = None


HostPathType = Literal["", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice",
                       "BlockDevice"]


class HostPathVolumeSource(K8sModel):
    path: Str
    type: HostPathType | None = None


class KeyToPath(K8sModel):
    key: Str
    path: Str
    mode: Int | None = None


class ConfigMapVolumeSource(K8sModel):
    name: Str | None = None
    items: tuple[KeyToPath, ...] | None = None
    defaultMode: Int = 0o644
    optional: Bool | None = None


class SecretVolumeSource(K8sModel):
    secretName: Str | None = None
    items: tuple[KeyToPath, ...] | None = None
    defaultMode: Int = 0o644
    optional: Bool | None = None


class Volume(K8sModel):
    name: Str
    emptyDir: EmptyDirVolumeSource | None = None
    hostPath: HostPathVolumeSource | None = None
    configMap: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None


class PodSpec(K8sModel):
    containers: tuple[Container, ...]
    volumes: tuple[Volume, ...] | None = None
    restartPolicy: Literal["Always", "OnFailure", "Never"] = "Always"
    terminationGracePeriodSeconds: Int = 30
    activeDeadlineSeconds: Int | None = None
    dnsPolicy: Literal["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"] = "ClusterFirst"
    nodeSelector: dict[Str, Str] | None = None
    serviceAccountName: Str | None = None
    nodeName: Str | None = None
    hostNetwork: Bool | None = None
    shareProcessNamespace: Bool | None = None
    hostname: Str | None = None
    subdomain: Str | None = None


# ---------------------------------------------------------------- pod status

class PodCondition(K8sModel):
    type: Str
    status: Literal["True", "False", "Unknown"]
    lastProbeTime: Str | None = None
    lastTransitionTime: Str | None = None
    reason: Str | None = None
    message: Str | None = None


class ContainerStateWaiting(K8sModel):
    reason: Str | None = None
    message: Str | None = None


class ContainerStateRunning(K8sModel):
    startedAt: Str | None = None


class ContainerStateTerminated(K8sModel):
    exitCode: Int
    signal: Int | None = None
    reason: Str | None = None
    message: Str | None = None
    startedAt: Str | None = None
    finishedAt: Str | None = None
    containerID: Str | None = None


class ContainerState(K8sModel):
    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    terminated: ContainerStateTerminated | None = None


class ContainerStatus(K8sModel):
    name: Str
    state: ContainerState | None = None
    lastState: ContainerState | None = None
    ready: Bool = False
    restartCount: Int = 0
    image: Str = ""
    imageID: Str = ""
    containerID: Str | None = None
    started: Bool | None = None


class PodIP(K8sModel):
    ip: Str


class PodStatus(K8sModel):
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"] | None = None
    conditions: tuple[PodCondition, ...] | None = None
    message: Str | None = None
    reason: Str | None = None
    hostIP: Str | None = None
    hostIPs: tuple[PodIP, ...] | None = None
    podIP: Str | None = None
    podIPs: tuple[PodIP, ...] | None = None
    startTime: Str | None = None
    containerStatuses: tuple[ContainerStatus, ...] | None = None
    qosClass: Literal["Guaranteed", "Burstable", "BestEffort"] | None = None


class Pod(K8sModel):
    apiVersion: Literal["v1"] = "v1"
    kind: Literal["Pod"] = "Pod"
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus | None = None


class PodTemplateSpec(K8sModel):
    metadata: ObjectMeta | None = None
    spec: PodSpec


# ---------------------------------------------------------------- replication controller

class ReplicationControllerSpec(K8sModel):
    replicas: Int = 1
    minReadySeconds: Int | None = None
    selector: dict[Str, Str] | None = None
    template: PodTemplateSpec

    @model_validator(mode="before")
    @classmethod
    def _default_selector(cls, data: Any) -> Any:
        # Kubernetes copies the template's labels into an absent or empty selector.
        if isinstance(data, dict) and not data.get("selector"):
            tmpl = data.get("template")
            meta = tmpl.get("metadata") if isinstance(tmpl, dict) else None
            labels = meta.get("labels") if isinstance(meta, dict) else None
            if isinstance(labels, dict) and labels:
                data = {**data, "selector": dict(labels)}
        return data


class ReplicationControllerCondition(K8sModel):
    type: Str
    status: Literal["True", "False", "Unknown"]
    lastTransitionTime: Str | None = None
    reason: Str | None = None
    message: Str | None = None


class ReplicationControllerStatus(K8sModel):
    replicas: Int = 0
    fullyLabeledReplicas: Int | None = None
    readyReplicas: Int | None = None
    availableReplicas: Int | None = None
    observedGeneration: Int | None = None
    conditions: tuple[ReplicationControllerCondition, ...] | None = None


class ReplicationController(K8sModel):
    apiVersion: Literal["v1"] = "v1"
    kind: Literal["ReplicationController"] = "ReplicationController"
    metadata: ObjectMeta
    spec: ReplicationControllerSpec
    status: ReplicationControllerStatus | None = None


# ---------------------------------------------------------------- apps/v1: replica set, deployment

class LabelSelectorRequirement(K8sModel):
    key: Str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[Str, ...] | None = None


class LabelSelector(K8sModel):
    """A set-based selector (apps/v1): every matchLabels pair and every matchExpressions clause must hold."""

    matchLabels: dict[Str, Str] | None = None
    matchExpressions: tuple[LabelSelectorRequirement, ...] | None = None


class ReplicaSetSpec(K8sModel):
    replicas: Int = 1
    minReadySeconds: Int = 0
    selector: LabelSelector
    template: PodTemplateSpec


class ReplicaSetStatus(ReplicationControllerStatus):
    """apps/v1 ReplicaSetStatus: the same fields as ReplicationControllerStatus."""


class ReplicaSet(K8sModel):
    apiVersion: Literal["apps/v1"] = "apps/v1"
    kind: Literal["ReplicaSet"] = "ReplicaSet"
    metadata: ObjectMeta
    spec: ReplicaSetSpec
    status: ReplicaSetStatus | None = None


class RollingUpdateDeployment(K8sModel):
    maxUnavailable: IntOrString = "25%"
    maxSurge: IntOrString = "25%"


class DeploymentStrategy(K8sModel):
    type: Literal["Recreate", "RollingUpdate"] = "RollingUpdate"
    rollingUpdate: RollingUpdateDeployment | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_rolling_update(cls, data: Any) -> Any:
        # Kubernetes fills rollingUpdate (25%/25%) only for the RollingUpdate type.
        if isinstance(data, dict) and data.get("type", "RollingUpdate") == "RollingUpdate" and data.get("rollingUpdate") is None:
            data = {**data, "rollingUpdate": {}}
        return data


class DeploymentSpec(K8sModel):
    replicas: Int = 1
    selector: LabelSelector
    template: PodTemplateSpec
    strategy: DeploymentStrategy = Field(default_factory=lambda: DeploymentStrategy.model_validate({}))
    minReadySeconds: Int = 0
    revisionHistoryLimit: Int = 10
    paused: Bool | None = None
    progressDeadlineSeconds: Int = 600


class DeploymentCondition(K8sModel):
    type: Str
    status: Literal["True", "False", "Unknown"]
    lastUpdateTime: Str | None = None
    lastTransitionTime: Str | None = None
    reason: Str | None = None
    message: Str | None = None


class DeploymentStatus(K8sModel):
    observedGeneration: Int | None = None
    replicas: Int | None = None
    updatedReplicas: Int | None = None
    readyReplicas: Int | None = None
    availableReplicas: Int | None = None
    unavailableReplicas: Int | None = None
    conditions: tuple[DeploymentCondition, ...] | None = None
    collisionCount: Int | None = None


class Deployment(K8sModel):
    apiVersion: Literal["apps/v1"] = "apps/v1"
    kind: Literal["Deployment"] = "Deployment"
    metadata: ObjectMeta
    spec: DeploymentSpec
    status: DeploymentStatus | None = None


# ---------------------------------------------------------------- service

class ServicePort(K8sModel):
    name: Str | None = None
    protocol: Protocol = "TCP"
    port: Int
    targetPort: IntOrString
    nodePort: Int | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_target_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("targetPort") in (None, 0, "") and "port" in data:
            data = {**data, "targetPort": data["port"]}
        return data


class ServiceSpec(K8sModel):
    # LoadBalancer is refused by validation, not here, so the message can say why.
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    clusterIP: Str | None = None
    clusterIPs: tuple[Str, ...] | None = None
    ipFamilies: tuple[Literal["IPv4"], ...] | None = None
    ipFamilyPolicy: Literal["SingleStack"] | None = None
    selector: dict[Str, Str] | None = None
    ports: tuple[ServicePort, ...] | None = None
    sessionAffinity: Literal["None", "ClientIP"] = "None"


class LoadBalancerStatus(K8sModel):
    ingress: tuple[dict[Str, Any], ...] | None = None


class ServiceStatus(K8sModel):
    loadBalancer: LoadBalancerStatus | None = None


class Service(K8sModel):
    apiVersion: Literal["v1"] = "v1"
    kind: Literal["Service"] = "Service"
    metadata: ObjectMeta
    spec: ServiceSpec = Field(default_factory=ServiceSpec)
    status: ServiceStatus | None = None


# ---------------------------------------------------------------- namespace

class NamespaceSpec(K8sModel):
    finalizers: tuple[Str, ...] | None = None


class NamespaceStatus(K8sModel):
    phase: Literal["Active", "Terminating"] | None = None


class Namespace(K8sModel):
    apiVersion: Literal["v1"] = "v1"
    kind: Literal["Namespace"] = "Namespace"
    metadata: ObjectMeta
    spec: NamespaceSpec | None = None
    status: NamespaceStatus | None = None


# ---------------------------------------------------------------- node (observed)

class NodeSpec(K8sModel):
    unschedulable: Bool | None = None
    podCIDR: Str | None = None


class NodeCondition(K8sModel):
    type: Str
    status: Literal["True", "False", "Unknown"]
    lastHeartbeatTime: Str | None = None
    lastTransitionTime: Str | None = None
    reason: Str | None = None
    message: Str | None = None


class NodeAddress(K8sModel):
    type: Str
    address: Str


class NodeSystemInfo(K8sModel):
    machineID: Str = ""
    systemUUID: Str = ""
    bootID: Str = ""
    kernelVersion: Str = ""
    osImage: Str = ""
    containerRuntimeVersion: Str = ""
    kubeletVersion: Str = ""
    kubeProxyVersion: Str = ""
    operatingSystem: Str = ""
    architecture: Str = ""


class NodeStatus(K8sModel):
    capacity: dict[Str, Quantity] | None = None
    allocatable: dict[Str, Quantity] | None = None
    conditions: tuple[NodeCondition, ...] | None = None
    addresses: tuple[NodeAddress, ...] | None = None
    nodeInfo: NodeSystemInfo | None = None


class Node(K8sModel):
    apiVersion: Literal["v1"] = "v1"
    kind: Literal["Node"] = "Node"
    metadata: ObjectMeta
    spec: NodeSpec | None = None
    status: NodeStatus | None = None


# ---------------------------------------------------------------- event (observed)

class EventSource(K8sModel):
    component: Str | None = None
    host: Str | None = None


class Event(K8sModel):
    apiVersion: Literal["v1"] = "v1"
    kind: Literal["Event"] = "Event"
    metadata: ObjectMeta
    involvedObject: ObjectReference
    reason: Str | None = None
    message: Str | None = None
    type: Literal["Normal", "Warning"] | None = None
    count: Int | None = None
    firstTimestamp: Str | None = None
    lastTimestamp: Str | None = None
    source: EventSource | None = None


# ---------------------------------------------------------------- endpoints (derived)

class EndpointAddress(K8sModel):
    ip: Str
    hostname: Str | None = None
    nodeName: Str | None = None
    targetRef: ObjectReference | None = None


class EndpointPort(K8sModel):
    name: Str | None = None
    port: Int
    protocol: Protocol = "TCP"


class EndpointSubset(K8sModel):
    addresses: tuple[EndpointAddress, ...] | None = None
    notReadyAddresses: tuple[EndpointAddress, ...] | None = None
    ports: tuple[EndpointPort, ...] | None = None


class Endpoints(K8sModel):
    apiVersion: Literal["v1"] = "v1"
    kind: Literal["Endpoints"] = "Endpoints"
    metadata: ObjectMeta
    subsets: tuple[EndpointSubset, ...] | None = None


# ---------------------------------------------------------------- configuration (gitkube.api.config validates)

class ConfigMap(K8sModel):
    apiVersion: Literal["v1"] = "v1"
    kind: Literal["ConfigMap"] = "ConfigMap"
    metadata: ObjectMeta
    data: dict[Str, Str] | None = None
    binaryData: dict[Str, Str] | None = None  # base64, as in Kubernetes' JSON
    immutable: Bool | None = None


class Secret(K8sModel):
    apiVersion: Literal["v1"] = "v1"
    kind: Literal["Secret"] = "Secret"
    metadata: ObjectMeta
    type: Str = "Opaque"
    data: dict[Str, Str] | None = None  # base64, as in Kubernetes' JSON
    stringData: dict[Str, Str] | None = None  # write-only: merged into data
    immutable: Bool | None = None


KubeObject = Union[Pod, ReplicationController, ReplicaSet, Deployment, Service, Namespace, Node, Event, Endpoints,
                   ConfigMap, Secret]

# kind -> model; a kind added here also needs its line in gitkube.api.resources (get, the API server's discovery)
KINDS: dict[str, type[K8sModel]] = {
    "Pod": Pod,
    "ReplicationController": ReplicationController,
    "ReplicaSet": ReplicaSet,
    "Deployment": Deployment,
    "Service": Service,
    "Namespace": Namespace,
    "Node": Node,
    "Event": Event,
    "Endpoints": Endpoints,
    "ConfigMap": ConfigMap,
    "Secret": Secret,
}
NAMESPACED: frozenset[str] = frozenset({"Pod", "ReplicationController", "ReplicaSet", "Deployment", "Service", "Event",
                                       "Endpoints", "ConfigMap", "Secret"})
# The group/version of each kind not in the core v1 group.
API_VERSIONS: dict[str, str] = {"ReplicaSet": "apps/v1", "Deployment": "apps/v1"}
