// One sandbox session and its agent Deployment, through the condukt-egress
// package (`pulumi install` generates ./sdks/pulumi-condukt-egress from ../../provider
// and adds its replace directive to go.mod).
//
//	pulumi stack init session-42
//	pulumi config set sessionId 42
//	pulumi up
package main

import (
	"example.com/pulumi-condukt-egress/sdk/go/conduktegress"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"
)

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		cfg := config.New(ctx, "")
		namespace := cfg.Get("namespace")
		if namespace == "" {
			namespace = "agents"
		}

		// The per-session CA, the sidecar's Secret and the NetworkPolicy.
		timeout := 5000
		deny := conduktegress.DefaultActionDeny
		egress, err := conduktegress.NewSandboxEgress(ctx, "egress", &conduktegress.SandboxEgressArgs{
			SessionId: cfg.Require("sessionId"),
			Namespace: &namespace,
			Policy: &conduktegress.EgressPolicyArgs{
				Rules: []conduktegress.PolicyRuleArgs{
					{Deny: []string{"*.internal.example.com"}},
					{Allow: []string{"api.github.com", "*.openai.com"}},
					{Decide: &conduktegress.DecideRuleArgs{TimeoutMs: &timeout}},
				},
				Default: &deny,
				Redact:  []string{"x-api-key"},
			},
		})
		if err != nil {
			return err
		}

		// The agent's Deployment, injected and declared after the Secret and
		// the NetworkPolicy (Session carries that dependency).
		labels := map[string]any{"app": "agent"}
		agent, err := conduktegress.NewSandboxWorkload(ctx, "agent", &conduktegress.SandboxWorkloadArgs{
			Session: egress.Session,
			Workload: pulumi.ToMap(map[string]any{
				"apiVersion": "apps/v1",
				"kind":       "Deployment",
				"metadata":   map[string]any{"name": "agent", "namespace": namespace, "labels": labels},
				"spec": map[string]any{
					"replicas": 1,
					"selector": map[string]any{"matchLabels": labels},
					"template": map[string]any{
						"metadata": map[string]any{"labels": labels},
						"spec": map[string]any{
							"containers": []any{map[string]any{
								"name":    "workspace",
								"image":   "python:3.13-slim",
								"command": []any{"sleep", "infinity"},
							}},
						},
					},
				},
			}),
		})
		if err != nil {
			return err
		}

		ctx.Export("secretName", egress.SecretName)
		ctx.Export("networkPolicyName", egress.NetworkPolicyName)
		ctx.Export("podLabels", egress.PodLabels)
		ctx.Export("agentManifest", agent.Manifest)
		return nil
	})
}
