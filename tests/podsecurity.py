"""PodSecurity "restricted" checker for pod specs, plus this project's own two rules.

Every pod the project ships or spawns must pass it. It reproduces the checks of Kubernetes'
Pod Security Standards (baseline + restricted, version "latest") that can be decided from the
pod spec alone, and adds: a read-only root filesystem in every container, and a writable
`/tmp` emptyDir for each of them (Python, torch and kopf need scratch space; short-lived init
containers may go without).

    from podsecurity import restricted_violations, assert_restricted
    assert_restricted(deployment)          # a Pod, Deployment, Job, PodTemplate or bare PodSpec
    restricted_violations(pod_spec)        # -> ["spec.containers[0].securityContext...: ..."]

Accepts plain dicts (camelCase, as in manifests) and kubernetes-client model objects.
"""

from __future__ import annotations

from typing import Any

# Restricted profile: the only volume types allowed.
ALLOWED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
# Baseline: sysctls considered safe (namespaced, isolated).
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
ALLOWED_SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
ALLOWED_SECCOMP = frozenset({"RuntimeDefault", "Localhost"})
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def _plain(obj: Any) -> Any:
    """kubernetes-client models -> camelCase dicts, as the API server sees them."""
    if hasattr(obj, "openapi_types"):
        from kubernetes.client import ApiClient

        return ApiClient().sanitize_for_serialization(obj)
    return obj


def pod_spec_of(obj: Any) -> tuple[str, dict[str, Any]]:
    """Find the PodSpec in a Pod, a workload (Deployment, Job, ...), a template or a PodSpec.

    Returns the field path of the spec (for messages) and the spec itself.
    """
    obj = _plain(obj)
    if not isinstance(obj, dict):
        raise TypeError(f"expected a manifest dict or a kubernetes model, got {type(obj).__name__}")
    kind = obj.get("kind")
    if "containers" in obj:
        return "spec", obj
    if kind == "Pod":
        return "spec", obj["spec"]
    if kind == "CronJob":
        return "spec.jobTemplate.spec.template.spec", obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind == "PodTemplate":
        return "template.spec", obj["template"]["spec"]
    if "spec" in obj and "template" in obj["spec"]:
        return "spec.template.spec", obj["spec"]["template"]["spec"]
    if "template" in obj:
        return "template.spec", obj["template"]["spec"]
    raise ValueError(f"no pod spec found in {kind or 'object'} with keys {sorted(obj)}")


def _containers(spec: dict[str, Any], base: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for field in CONTAINER_LISTS:
        for i, container in enumerate(spec.get(field) or []):
            found.append((f"{base}.{field}[{i}]", container))
    return found


def _check_pod_level(spec: dict[str, Any], base: str) -> list[str]:
    errors = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            errors.append(f"{base}.{flag}: must be false or unset")
    psc = spec.get("securityContext") or {}
    if psc.get("runAsUser") == 0:
        errors.append(f"{base}.securityContext.runAsUser: must not be 0 (root)")
    win = psc.get("windowsOptions") or {}
    if win.get("hostProcess"):
        errors.append(f"{base}.securityContext.windowsOptions.hostProcess: must not be true")
    for i, sysctl in enumerate(psc.get("sysctls") or []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            errors.append(
                f"{base}.securityContext.sysctls[{i}].name: {sysctl.get('name')!r} is not a safe sysctl"
            )
    errors += _check_selinux(psc.get("seLinuxOptions"), f"{base}.securityContext.seLinuxOptions")
    errors += _check_apparmor(psc.get("appArmorProfile"), f"{base}.securityContext.appArmorProfile")
    seccomp = (psc.get("seccompProfile") or {}).get("type")
    if seccomp is not None and seccomp not in ALLOWED_SECCOMP:
        errors.append(
            f"{base}.securityContext.seccompProfile.type: {seccomp!r} must be RuntimeDefault or Localhost"
        )
    for i, volume in enumerate(spec.get("volumes") or []):
        kinds = set(volume) - {"name"}
        bad = kinds - ALLOWED_VOLUME_TYPES
        if bad:
            errors.append(
                f"{base}.volumes[{i}] ({volume.get('name')}): volume type {sorted(bad)} is not allowed "
                f"(restricted allows {sorted(ALLOWED_VOLUME_TYPES)})"
            )
    return errors


def _check_selinux(opts: dict[str, Any] | None, path: str) -> list[str]:
    if not opts:
        return []
    errors = []
    if opts.get("type", "") not in ALLOWED_SELINUX_TYPES:
        errors.append(f"{path}.type: {opts.get('type')!r} is not allowed")
    for field in ("user", "role"):
        if opts.get(field):
            errors.append(f"{path}.{field}: must be unset")
    return errors


def _check_apparmor(profile: dict[str, Any] | None, path: str) -> list[str]:
    if profile and profile.get("type") not in ("RuntimeDefault", "Localhost"):
        return [f"{path}.type: {profile.get('type')!r} must be RuntimeDefault or Localhost"]
    return []


def _check_container(
    container: dict[str, Any], path: str, pod_sc: dict[str, Any], volumes: dict[str, dict[str, Any]]
) -> list[str]:
    errors = []
    sc = container.get("securityContext") or {}
    scp = f"{path}.securityContext"
    if sc.get("privileged"):
        errors.append(f"{scp}.privileged: must be false or unset")
    if sc.get("allowPrivilegeEscalation") is not False:
        errors.append(f"{scp}.allowPrivilegeEscalation: must be false")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        errors.append(f"{scp}.capabilities.drop: must include ALL")
    extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
    if extra:
        errors.append(f"{scp}.capabilities.add: {sorted(extra)} not allowed (only NET_BIND_SERVICE)")
    # runAsNonRoot may come from the pod, but a container must not switch it off.
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    if non_root is not True:
        errors.append(f"{scp}.runAsNonRoot: must be true here or in the pod's securityContext")
    if sc.get("runAsUser") == 0:
        errors.append(f"{scp}.runAsUser: must not be 0 (root)")
    seccomp = (sc.get("seccompProfile") or {}).get("type") or (pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp not in ALLOWED_SECCOMP:
        errors.append(
            f"{scp}.seccompProfile.type: must be RuntimeDefault or Localhost here or in the pod's securityContext"
        )
    if sc.get("procMount") not in (None, "Default"):
        errors.append(f"{scp}.procMount: must be Default or unset")
    errors += _check_selinux(sc.get("seLinuxOptions"), f"{scp}.seLinuxOptions")
    errors += _check_apparmor(sc.get("appArmorProfile"), f"{scp}.appArmorProfile")
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        errors.append(f"{scp}.windowsOptions.hostProcess: must not be true")
    for i, port in enumerate(container.get("ports") or []):
        if port.get("hostPort"):
            errors.append(f"{path}.ports[{i}].hostPort: must be unset or 0")
    # This project's rules on top of "restricted".
    if sc.get("readOnlyRootFilesystem") is not True:
        errors.append(f"{scp}.readOnlyRootFilesystem: must be true (mount an emptyDir at /tmp for scratch)")
    tmp = [m for m in container.get("volumeMounts") or [] if m.get("mountPath") == "/tmp"]
    if not tmp and ".initContainers[" in path:
        pass  # short-lived init containers may do without scratch space
    elif not tmp:
        errors.append(f"{path}.volumeMounts: needs a writable emptyDir at /tmp")
    elif tmp[0].get("readOnly") or "emptyDir" not in volumes.get(tmp[0].get("name"), {}):
        errors.append(f"{path}.volumeMounts: /tmp must be a writable emptyDir volume")
    return errors


def restricted_violations(obj: Any) -> list[str]:
    """Every way `obj`'s pod spec breaks PodSecurity "restricted" or the project's rules."""
    base, spec = pod_spec_of(obj)
    pod_sc = spec.get("securityContext") or {}
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    errors = _check_pod_level(spec, base)
    containers = _containers(spec, base)
    if not containers:
        errors.append(f"{base}.containers: no containers")
    for path, container in containers:
        errors += _check_container(container, path, pod_sc, volumes)
    return errors


def assert_restricted(obj: Any) -> None:
    """Raise AssertionError listing every violation, if any."""
    errors = restricted_violations(obj)
    if errors:
        raise AssertionError("pod spec is not PodSecurity restricted:\n  " + "\n  ".join(errors))
