// R code calling tools answered in TypeScript, through a running daemon
// (SECURER_SOCKET, else /run/securer-runc/serve.sock):
//
//   make ts-build && SECURER_SOCKET=/run/securer-runc/serve.sock node dist/examples/weather.js
import { Client, tool, R } from "../src/index.js";

const forecast = tool({
  name: "forecast",
  description: "Tomorrow's forecast for a city",
  args: { city: "character" },
  handler: async ({ city }, { signal }) => {
    // A real tool would call a service here, passing the signal on
    // (fetch(url, { signal })): it aborts if R stops waiting.
    if (signal.aborted) throw new Error("cancelled");
    if (city === "Atlantis") throw new Error(`no forecast for ${city}`);
    return { city, high: 21.5, low: 12, rain: [0.5, 0.25, 0] };
  },
});

const cities = tool({
  name: "cities",
  description: "Cities with a forecast",
  handler: () => R.dataFrame({ city: ["Boston", "Lyon"], pop: [650000n, 520000n] }),
});

async function main(): Promise<void> {
  const client = await Client.connect();
  try {
    const session = await client.createSession({ tools: [forecast, cities], options: { timeout: 10 } });
    const r = await session.execute(`
      f <- forecast("Boston")
      cat(sprintf("%s: %.1f to %.1f\\n", f$city, f$low, f$high))
      bad <- tryCatch(forecast("Atlantis"), error = function(e) conditionMessage(e))
      invisible(list(mean_rain = mean(f$rain), bad = bad, biggest = cities()$city[1]))`,
      { onStdout: (text) => process.stdout.write(text) });
    console.log(r.verdict, JSON.stringify(r.value));
    await session.close();
  } finally {
    await client.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
