// Console errors and deprecation warnings of a page, for the editor and workflow browser tests.
// A deprecation is "ours" when one of our files (served under /extensions/<pack>/) is on the stack
// that raised it; the frontend's own (e.g. its legacy queue menu) are reported apart, not failed on.

export async function watchConsole(page, report) {
  report.consoleErrors ??= [];
  report.deprecations = [];
  report.otherDeprecations = [];
  page.on("console", (m) => {
    if (m.type() === "error") report.consoleErrors.push(m.text().slice(0, 300));
  });
  page.on("pageerror", (e) => report.consoleErrors.push("pageerror: " + e.message.slice(0, 300)));
  await page.addInitScript(() => {
    const warn = console.warn.bind(console);
    window.__mi2vDeprecations = [];
    console.warn = (...args) => {
      const text = args.map(String).join(" ");
      if (/deprecat/i.test(text)) window.__mi2vDeprecations.push({ text: text.slice(0, 300), stack: new Error().stack ?? "" });
      warn(...args);
    };
  });
  // Call to move what the page saw so far into the report.
  return async function collectDeprecations() {
    const all = await page.evaluate(() => window.__mi2vDeprecations ?? []).catch(() => []);
    for (const d of all) {
      const ours = /\/extensions\/[^/]*motion-i2v[^/]*\//i.test(d.stack);
      if (ours && !report.deprecations.includes(d.text)) report.deprecations.push(d.text);
      if (!ours && !report.otherDeprecations.includes(d.text)) report.otherDeprecations.push(d.text);
    }
  };
}
