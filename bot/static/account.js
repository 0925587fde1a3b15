// Console: change your own password (POST /api/console/me/password). Text only.
"use strict";

(() => {
  const form = document.getElementById("password-form");
  if (!form) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const status = form.querySelector('[data-testid="password-status"]');

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    if (data.new_password !== data.repeat_password) {
      status.textContent = "The two new passwords differ.";
      return;
    }
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const response = await fetch("/api/console/me/password", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ current_password: data.current_password, new_password: data.new_password }),
        credentials: "same-origin",
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
      form.reset();
      status.textContent = "Password changed. Use the new one next time you sign in.";
    } catch (error) {
      status.textContent = `Not changed: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  });
})();
