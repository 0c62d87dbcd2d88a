#!/usr/bin/env node
// Offline schema validation of custom resources that kubernetes-validate has no schema for:
//   argoproj.io/v1alpha1 Application, AppProject, ApplicationSet   (@kubernetes-models/argo-cd)
//   monitoring.coreos.com/v1 ServiceMonitor, PrometheusRule          (@kubernetes-models/prometheus-operator)
// and the PromQL of every PrometheusRule expression, parsed with Prometheus' own grammar
// (@prometheus-io/lezer-promql, the parser of the Prometheus UI): a syntax error fails the rule.
// Usage: node validate.js FILE.yaml...   (multi-document YAML; empty documents are ignored)
// Exits 1 when a document fails its schema or has a kind this script does not know, 2 on usage errors.
// scripts/test-chart.sh runs it with NODE_PATH pointing at the node_modules that install-tools.sh installed.
"use strict";

const fs = require("fs");
const YAML = require("yaml");
const argo = require("@kubernetes-models/argo-cd/argoproj.io/v1alpha1");
const monitoring = require("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1");
const { parser: promql } = require("@prometheus-io/lezer-promql");

const MODELS = {
  "argoproj.io/v1alpha1/Application": argo.Application,
  "argoproj.io/v1alpha1/AppProject": argo.AppProject,
  "argoproj.io/v1alpha1/ApplicationSet": argo.ApplicationSet,
  "monitoring.coreos.com/v1/ServiceMonitor": monitoring.ServiceMonitor,
  "monitoring.coreos.com/v1/PrometheusRule": monitoring.PrometheusRule,
};

function describeErrors(err) {
  if (Array.isArray(err.errors) && err.errors.length > 0) {
    return err.errors
      .map((e) => `${e.instancePath || "/"} ${e.message}${e.params ? " " + JSON.stringify(e.params) : ""}`)
      .join("; ");
  }
  return err.message;
}

// PromQL syntax errors of a PrometheusRule, as messages.
function promqlErrors(obj) {
  const messages = [];
  for (const group of (obj.spec && obj.spec.groups) || []) {
    for (const rule of group.rules || []) {
      const expr = String(rule.expr);
      const tree = promql.parse(expr);
      tree.iterate({
        enter: (node) => {
          if (node.type.isError) {
            const at = expr.slice(Math.max(0, node.from - 20), node.from + 20).replace(/\s+/g, " ");
            messages.push(`${group.name}/${rule.alert || rule.record}: PromQL syntax error at ${node.from}: ...${at}...`);
          }
        },
      });
    }
  }
  return messages;
}

function main(files) {
  if (files.length === 0) {
    console.error("usage: node validate.js FILE.yaml...");
    return 2;
  }
  let failed = 0;
  let passed = 0;
  for (const file of files) {
    const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
    docs.forEach((doc, index) => {
      if (doc.errors.length > 0) {
        console.log(`ERROR ${file}#${index}: YAML: ${doc.errors.map((e) => e.message).join("; ")}`);
        failed++;
        return;
      }
      const obj = doc.toJS();
      if (obj === null || obj === undefined) return;
      const id = `${obj.apiVersion}/${obj.kind}`;
      const name = `${file}#${index} ${obj.kind}/${obj.metadata && obj.metadata.name}`;
      const Model = MODELS[id];
      if (!Model) {
        console.log(`ERROR ${name}: no schema for ${id} (known: ${Object.keys(MODELS).join(", ")})`);
        failed++;
        return;
      }
      try {
        new Model(obj).validate();
        const syntax = obj.kind === "PrometheusRule" ? promqlErrors(obj) : [];
        if (syntax.length > 0) {
          console.log(`ERROR ${name}: ${syntax.join("; ")}`);
          failed++;
          return;
        }
        console.log(`ok    ${name}`);
        passed++;
      } catch (err) {
        console.log(`ERROR ${name}: ${describeErrors(err)}`);
        failed++;
      }
    });
  }
  console.log(`validate.js: ${passed} valid, ${failed} invalid`);
  return failed > 0 ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
