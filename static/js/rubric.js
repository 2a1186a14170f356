// Rubric builder: the total follows the max-points fields as the teacher types,
// before anything is saved. The server recomputes it after every save.
document.addEventListener("input", (event) => {
  const builder = document.getElementById("rubric-builder");
  if (!builder || !event.target.matches(".criterion-form:not(.new-criterion) input[name=max_points]")) return;
  let total = 0;
  builder.querySelectorAll(".criterion-form:not(.new-criterion) input[name=max_points]").forEach((input) => {
    const value = parseInt(input.value, 10);
    if (Number.isFinite(value) && value > 0) total += value;
  });
  document.getElementById("rubric-total").textContent = total;
});
