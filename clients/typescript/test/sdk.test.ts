// The TypeScript SDK against a real custops server this test starts (its
// embedded defaults: SQLite, the stand-ins in the same process): create,
// publish, list with pages, a member's view, and typed errors.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { Code, CustopsError, ErrorReason, createCustopsClient, eachItem, type CustopsClient } from "../src/index.js";
import { BenefitKind } from "../src/gen/custops/benefit/v1/benefit_pb.js";
import {
  BusinessProduct,
  FrontOffice,
  RunState,
  type Plan,
} from "../src/gen/custops/plan/v1/plan_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { PlanSchema } from "../src/gen/custops/plan/v1/plan_pb.js";

// dist/test/sdk.test.js -> the repository's root
const ROOT = resolve(fileURLToPath(import.meta.url), "../../../../..");
const PYTHON = process.env.CUSTOPS_PYTHON ?? join(ROOT, ".venv", "bin", "python");
const MEMBERS = 30;

let server: ChildProcess;
let folder: string;
let client: CustopsClient;

function startServer(): Promise<string> {
  folder = mkdtempSync(join(tmpdir(), "custops-ts-"));
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith("CUSTOPS_")) env[name] = value;
  }
  Object.assign(env, {
    PYTHONPATH: [ROOT, join(ROOT, "clients")].join(":"),
    CUSTOPS_METRICS_LISTEN: "127.0.0.1:0",
    CUSTOPS_STUBS_POPULATION: String(MEMBERS),
  });
  server = spawn(
    PYTHON,
    ["-m", "server.cli", "serve", "--listen", "127.0.0.1:0", "--stubs-listen", "127.0.0.1:0",
      "--database-url", `sqlite+aiosqlite:///${join(folder, "custops.db")}`],
    { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] },
  );
  return new Promise((ready, fail) => {
    let said = "";
    const timer = setTimeout(() => fail(new Error(`no serving line in 60 s:\n${said}`)), 60_000);
    const listen = (chunk: Buffer) => {
      said += chunk.toString();
      const found = /serving on 127\.0\.0\.1:(\d+)/.exec(said);
      if (found) {
        clearTimeout(timer);
        ready(`127.0.0.1:${found[1]}`);
      }
    };
    server.stdout?.on("data", listen);
    server.stderr?.on("data", listen);
    server.on("exit", (code) => fail(new Error(`the server exited (${code}):\n${said}`)));
  });
}

before(async () => {
  client = createCustopsClient({ target: await startServer(), timeoutMs: 20_000 });
});

after(async () => {
  server.kill("SIGTERM");
  await new Promise((done) => server.once("exit", done));
  rmSync(folder, { recursive: true, force: true });
});

function shop(): string {
  return `ts-shop-${Math.random().toString(16).slice(2, 10)}`;
}

// For every member, at once: one coupon each.
function everyoneNow(name: string): MessageInitShape<typeof PlanSchema> {
  return {
    displayName: name,
    businessProduct: BusinessProduct.BIRTHDAY,
    frontOffice: FrontOffice.MICRO_MALL,
    timeZone: "Asia/Shanghai",
    audience: {
      condition: { case: "levels", value: { levels: ["V0", "V1", "V2", "V3", "V4", "V5"] } },
    },
    time: {
      effective: "* * * * * * * 1",
      term: "0-0 0-0 0-0 1-31 1-12 * 2026-2030 2",
      execution: "* * * * * * * 1",
    },
    actions: [
      {
        kind: {
          case: "grantBenefit",
          value: {
            benefits: [{ templateId: "coupon-10-off-100", kind: BenefitKind.COUPON, quantity: 1n }],
          },
        },
      },
    ],
  };
}

async function settled(shopId: string, plan: Plan): Promise<RunState> {
  for (let i = 0; i < 300; i++) {
    // bounded: the run of 30 members ends within seconds
    const { runs } = await client.plans.listPlanRuns({ shopId, planId: plan.planId });
    const state = runs[0]?.state;
    if (state === RunState.SUCCEEDED || state === RunState.FAILED || state === RunState.COMPLETED_WITH_FAILURES) {
      return state;
    }
    await new Promise((wait) => setTimeout(wait, 100));
  }
  throw new Error("the run did not end in 30 s");
}

test("create, publish, and the member's view shows the coupon", async () => {
  const shopId = shop();
  const { plan: draft } = await client.plans.createPlan({ shopId, plan: everyoneNow("TS everyone") });
  assert.ok(draft);
  const { plan: published } = await client.plans.publishPlan({ shopId, planId: draft.planId, etag: draft.etag });
  assert.ok(published && published.planId === draft.planId);
  assert.equal(await settled(shopId, published), RunState.SUCCEEDED);

  const view = await client.scenario.getMemberView({
    shopId,
    memberId: "m00000001",
    frontOffice: FrontOffice.MICRO_MALL,
  });
  const coupons = view.unusedBenefits.filter((b) => b.planId === draft.planId);
  assert.equal(coupons.length, 1);
  assert.equal(coupons[0]?.templateId, "coupon-10-off-100");
  assert.equal(coupons[0]?.quantity, 1n);
});

test("list with pages: every plan once, newest first", async () => {
  const shopId = shop();
  const made: string[] = [];
  for (let i = 0; i < 7; i++) {
    const { plan } = await client.plans.createPlan({ shopId, plan: { displayName: `plan ${i}` } });
    made.push(plan?.planId ?? "");
  }
  const first = await client.plans.listPlans({ shopId, pageSize: 3 });
  assert.equal(first.plans.length, 3);
  assert.notEqual(first.nextPageToken, "");

  const seen: string[] = [];
  for await (const plan of eachItem(client.plans.listPlans, { shopId, pageSize: 3 }, (page) => page.plans)) {
    seen.push(plan.planId);
  }
  assert.deepEqual(seen, [...made].reverse());
});

test("a refusal is a typed error with its reason and field violations", async () => {
  const shopId = shop();
  await assert.rejects(
    client.plans.createPlan({ shopId, plan: { displayName: "", description: "x".repeat(5000) } }),
    (error: unknown) => {
      assert.ok(error instanceof CustopsError);
      assert.equal(error.code, Code.InvalidArgument);
      assert.equal(error.reason, ErrorReason.INVALID_ARGUMENT);
      assert.equal(error.reasonName, "INVALID_ARGUMENT");
      const fields = error.fieldViolations.map((v) => v.field);
      assert.ok(fields.includes("plan.display_name"), fields.join());
      assert.ok(fields.includes("plan.description"), fields.join());
      assert.notEqual(error.requestId, "");
      return true;
    },
  );
  await assert.rejects(client.plans.getPlan({ shopId, planId: "no-such-plan" }), (error: unknown) => {
    assert.ok(error instanceof CustopsError);
    assert.equal(error.code, Code.NotFound);
    assert.equal(error.reason, ErrorReason.PLAN_NOT_FOUND);
    return true;
  });
});
