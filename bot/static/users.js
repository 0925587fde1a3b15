// Console: user management for admins. Text from the server goes in with textContent only.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const list = document.querySelector('[data-testid="user-list"]');
const form = document.querySelector('[data-testid="add-user-form"]');
const status = document.querySelector('[data-testid="users-status"]');
// The roles the server knows, from the add form (rendered from the server's list).
const ROLES = Array.from(form.elements.role.options, (option) => option.value);

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((data.error && data.error.message) || response.statusText);
  return data;
}

function cell(row, text) {
  const td = row.insertCell();
  td.textContent = text;
  return td;
}

function render(users) {
  list.replaceChildren();
  for (const user of users) {
    const row = list.insertRow();
    row.dataset.username = user.username;
    cell(row, user.username);
    const role = document.createElement("select");
    role.setAttribute("aria-label", `role of ${user.username}`);
    for (const name of ROLES) role.add(new Option(name, name, false, name === user.role));
    role.addEventListener("change", () => change(user, { role: role.value }));
    row.insertCell().append(role);
    cell(row, user.disabled ? "disabled" : "active");
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.textContent = user.disabled ? "Enable" : "Disable";
    toggle.addEventListener("click", () => change(user, { disabled: !user.disabled }));
    row.insertCell().append(toggle);
    row.insertCell().append(passwordControl(user));
  }
}

/** A new password for someone who forgot theirs (they change it themselves afterwards). */
function passwordControl(user) {
  const box = document.createElement("form");
  box.className = "set-password";
  const input = document.createElement("input");
  input.type = "password";
  input.required = true;
  input.minLength = 10;
  input.maxLength = 1024;
  input.autocomplete = "new-password";
  input.placeholder = "new password";
  input.setAttribute("aria-label", `new password for ${user.username}`);
  input.dataset.testid = "set-password-input";
  const button = document.createElement("button");
  button.type = "submit";
  button.textContent = "Set password";
  button.dataset.testid = "set-password";
  box.append(input, button);
  box.addEventListener("submit", (event) => {
    event.preventDefault();
    change(user, { password: input.value });
  });
  return box;
}

async function load() {
  render((await api("GET", "/api/console/users")).users);
}

async function change(user, patch) {
  try {
    await api("PATCH", `/api/console/users/${encodeURIComponent(user.id)}`, patch);
    status.textContent = patch.password ? `Set a new password for ${user.username}.` : `Saved ${user.username}.`;
  } catch (error) {
    status.textContent = error.message;
  }
  await load();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(form));
  try {
    const user = await api("POST", "/api/console/users", data);
    status.textContent = `Added ${user.role} ${user.username}.`;
    form.reset();
  } catch (error) {
    status.textContent = error.message;
  }
  await load();
});

load().catch((error) => { status.textContent = error.message; });
