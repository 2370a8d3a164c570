// One sandbox session and its agent Deployment, through the condukt-egress
// package (`pulumi install` generates ./sdks/pulumi-condukt-egress from ../../provider).
//
//   pulumi stack init session-42
//   pulumi config set sessionId 42
//   pulumi up
package conduktegress.example;

import com.pulumi.Pulumi;
import com.pulumi.conduktegress.SandboxEgress;
import com.pulumi.conduktegress.SandboxEgressArgs;
import com.pulumi.conduktegress.SandboxWorkload;
import com.pulumi.conduktegress.SandboxWorkloadArgs;
import com.pulumi.conduktegress.enums.DefaultAction;
import com.pulumi.conduktegress.inputs.DecideRuleArgs;
import com.pulumi.conduktegress.inputs.EgressPolicyArgs;
import com.pulumi.conduktegress.inputs.PolicyRuleArgs;
import com.pulumi.core.Output;
import java.util.List;
import java.util.Map;

public class App {
    public static void main(String[] args) {
        Pulumi.run(ctx -> {
            var config = ctx.config();
            var namespace = config.get("namespace").orElse("agents");

            // The per-session CA, the sidecar's Secret and the NetworkPolicy.
            var egress = new SandboxEgress("egress", SandboxEgressArgs.builder()
                .sessionId(config.require("sessionId"))
                .namespace(namespace)
                .policy(EgressPolicyArgs.builder()
                    .rules(
                        PolicyRuleArgs.builder().deny("*.internal.example.com").build(),
                        PolicyRuleArgs.builder().allow("api.github.com", "*.openai.com").build(),
                        PolicyRuleArgs.builder().decide(DecideRuleArgs.builder().timeoutMs(5000).build()).build())
                    // `default` is a Java keyword: pulumi-java names its accessor default_.
                    .default_(DefaultAction.Deny)
                    .redact("x-api-key")
                    .build())
                .build());

            // The agent's Deployment, injected and declared after the Secret and
            // the NetworkPolicy (session carries that dependency).
            Map<String, Object> labels = Map.of("app", "agent");
            var agent = new SandboxWorkload("agent", SandboxWorkloadArgs.builder()
                .session(egress.session())
                .workload(Map.<String, Object>of(
                    "apiVersion", "apps/v1",
                    "kind", "Deployment",
                    "metadata", Map.of("name", "agent", "namespace", namespace, "labels", labels),
                    "spec", Map.of(
                        "replicas", 1,
                        "selector", Map.of("matchLabels", labels),
                        "template", Map.of(
                            "metadata", Map.of("labels", labels),
                            "spec", Map.of("containers", List.of(Map.of(
                                "name", "workspace",
                                "image", "python:3.13-slim",
                                "command", List.of("sleep", "infinity"))))))))
                .build());

            ctx.export("secretName", egress.secretName());
            ctx.export("networkPolicyName", egress.networkPolicyName());
            ctx.export("podLabels", egress.podLabels());
            ctx.export("agentManifest", agent.manifest());
        });
    }
}
