// One sandbox session and the workloads of its agent, through the condukt-egress
// package (`pulumi install` generates ./sdks/pulumi-condukt-egress from ../../provider).
//
//   pulumi stack init session-42
//   pulumi config set sessionId 42
//   pulumi up
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import * as condukt from "@pulumi/condukt-egress";

const config = new pulumi.Config();
const sessionId = config.require("sessionId");
const namespace = config.get("namespace") ?? "agents";

// The per-session CA, the sidecar's Secret and the NetworkPolicy.
const egress = new condukt.SandboxEgress("egress", {
    sessionId,
    namespace,
    policy: {
        rules: [
            { deny: ["*.internal.example.com"] },
            { allow: ["api.github.com", "*.openai.com"] },
            { decide: { timeoutMs: 5000 } },
        ],
        default: "deny",
        redact: ["x-api-key"],
    },
});

// A Deployment declared by the package with the sidecar injected: TypeScript
// cannot call the Python inject() or attach its transform, so SandboxWorkload
// injects the manifest in the provider and declares it, after the Secret and
// the NetworkPolicy (egress.session carries that dependency).
const agent = new condukt.SandboxWorkload("agent", {
    session: egress.session,
    workload: {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "agent", namespace, labels: { app: "agent" } },
        spec: {
            replicas: 1,
            selector: { matchLabels: { app: "agent" } },
            template: {
                metadata: { labels: { app: "agent" } },
                spec: {
                    containers: [
                        { name: "workspace", image: "python:3.13-slim", command: ["sleep", "infinity"] },
                    ],
                },
            },
        },
    },
});

// Or keep declaring the workload yourself and take only the injected pod
// template; its output depends on the Secret and the NetworkPolicy too.
const worker = new condukt.SandboxWorkload("worker-template", {
    session: egress.session,
    podTemplate: {
        metadata: { labels: { app: "worker" } },
        spec: { containers: [{ name: "worker", image: "node:22-slim", command: ["sleep", "infinity"] }] },
    },
});
new k8s.apps.v1.Deployment("worker", {
    metadata: { namespace },
    spec: {
        selector: { matchLabels: { app: "worker" } },
        template: worker.podTemplate as pulumi.Output<k8s.types.input.core.v1.PodTemplateSpec>,
    },
});

export const secretName = egress.secretName;
export const networkPolicyName = egress.networkPolicyName;
export const podLabels = egress.podLabels;
export const agentManifest = agent.manifest;
